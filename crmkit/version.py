"""The platform's version, which plugins' ``PluginInfo.requires`` is checked against."""

__version__ = "0.1.0"
