"""A file object with one method replaced, for fault tests."""


class FileWrapper:
    """A file object passed through, but for the `write` a subclass overrides."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()
