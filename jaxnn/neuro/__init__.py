"""The neuroscience: learning rules (`rules`), spikes, tasks, reward learning (`reinforce`,
`agents`) and the environments the agents act in (`envs`)."""
