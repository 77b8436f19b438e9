"""The table every layer passes: (id, layer constructor, input shape). A new layer is a new row."""

import jaxnn as nn

LAYER_CASES = [
    ("dense", lambda: nn.Dense(5), (3, 4)),
    ("dense_3d_input", lambda: nn.Dense(2), (2, 3, 4)),
    ("dense_glorot", lambda: nn.Dense(3, w_init=nn.initializers.glorot_uniform), (4, 6)),
    ("conv_valid", lambda: nn.Conv2D(3, 3), (2, 7, 6, 2)),
    ("conv_same", lambda: nn.Conv2D(4, 5, padding="SAME"), (2, 8, 8, 1)),
    ("conv_stride2_same", lambda: nn.Conv2D(3, 3, strides=2, padding="SAME"), (2, 9, 8, 2)),
    ("conv_stride3_valid_ragged", lambda: nn.Conv2D(2, (3, 2), strides=(3, 2), padding="VALID"),
     (1, 11, 9, 3)),
    ("conv_explicit_asym", lambda: nn.Conv2D(2, (2, 3), strides=(2, 1), padding=((1, 3), (0, 2))),
     (2, 7, 5, 2)),
    ("conv_1x1", lambda: nn.Conv2D(3, 1), (2, 4, 4, 5)),
    ("conv_he", lambda: nn.Conv2D(2, 3, padding=1, w_init=nn.initializers.he_uniform), (1, 5, 5, 2)),
    ("avgpool_2", lambda: nn.AvgPool(2), (2, 8, 6, 3)),
    ("avgpool_ragged", lambda: nn.AvgPool(2), (2, 7, 5, 3)),
    ("avgpool_overlap_same", lambda: nn.AvgPool(3, strides=2, padding="SAME"), (2, 9, 8, 2)),
    ("avgpool_rect", lambda: nn.AvgPool((3, 2), strides=(1, 2)), (1, 6, 6, 2)),
    ("maxpool_2", lambda: nn.MaxPool(2), (2, 8, 6, 3)),
    ("maxpool_ragged", lambda: nn.MaxPool(2), (2, 7, 5, 3)),
    ("maxpool_overlap_same", lambda: nn.MaxPool(3, strides=2, padding="SAME"), (2, 9, 8, 2)),
    ("maxpool_explicit", lambda: nn.MaxPool((2, 3), strides=(2, 1), padding=((1, 0), (1, 1))),
     (1, 6, 5, 2)),
    ("flatten", lambda: nn.Flatten(), (2, 3, 4, 5)),
    ("reshape", lambda: nn.Reshape((4, -1)), (3, 2, 6)),
    ("identity", lambda: nn.Identity(), (3, 4)),
    ("tanh", lambda: nn.Tanh(), (3, 4, 2)),
    ("sigmoid", lambda: nn.Sigmoid(), (3, 5)),
    ("relu", lambda: nn.Relu(), (3, 5)),
    ("softmax", lambda: nn.Softmax(), (3, 6)),
    ("softmax_axis1", lambda: nn.Softmax(axis=1), (2, 4, 3)),
    ("logsoftmax", lambda: nn.LogSoftmax(), (3, 6)),
    ("heaviside", lambda: nn.Heaviside(), (3, 5)),
    ("heaviside_straight_through", lambda: nn.Heaviside(straight_through=True), (3, 5)),
    ("serial_mlp", lambda: nn.serial(nn.Dense(6), nn.Tanh(), nn.Dense(3), nn.LogSoftmax()), (4, 5)),
    ("serial_convnet", lambda: nn.serial(nn.Conv2D(3, 3, padding="SAME"), nn.Tanh(), nn.MaxPool(2),
                                         nn.Flatten(), nn.Dense(4)), (2, 6, 6, 1)),
    ("serial_relu_avgpool", lambda: nn.serial(nn.Conv2D(2, 3, strides=2), nn.Relu(), nn.AvgPool(2),
                                              nn.Flatten(), nn.Dense(3)), (2, 9, 9, 2)),
    ("residual_branch", lambda: nn.serial(nn.FanOut(2), nn.parallel(nn.Dense(4), nn.Identity()),
                                          nn.FanInSum(), nn.Tanh()), (3, 4)),
    ("concat_branch", lambda: nn.serial(nn.FanOut(2), nn.parallel(nn.Dense(2), nn.Sigmoid()),
                                        nn.FanInConcat()), (3, 4)),
]

# The derivative of a step is zero almost everywhere: finite differences see 0, which the
# plain Heaviside matches, but the straight-through estimator by design does not.
NO_NUMERIC_CHECK = {"heaviside_straight_through"}
