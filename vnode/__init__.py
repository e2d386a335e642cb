"""vnode: virtual Lightning nodes for a chat wallet."""

__version__ = "0.1.0"
