"""pytest side of ciq's persistent worker protocol.

The plugin (``ciq_pytest.plugin``) is loaded by pytest through the ``pytest11`` entry point
and stays inert unless pytest is given ``--ciq-persistent``. The protocol is described in
ciq's ``docs/persistent-protocol.md``.
"""

#: The version of the persistent worker protocol this package speaks.
PROTOCOL_VERSION = 1
