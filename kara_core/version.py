"""The kara-core version."""

__version__ = "3.0.0.dev0"
#: kara-storage 2.x exposed ``kara_storage.version`` as a string.
version = __version__
