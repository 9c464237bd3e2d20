"""The package version, in a module of its own so that ``models.py`` can read it without
importing ``bandguard/__init__.py`` (which imports ``models.py``)."""

__version__ = "0.1.0"
