"""The fleet's Mosquitto broker and its PKI (host only).

settings.py     what ``broker init`` is asked for, checked; the names and limits of what it writes
config_text.py  the directory's text: mosquitto.conf, the ACL, broker.json, the export line
setup.py        ``edge-sdk broker init``: certificates and files in one directory, read back
pki.py          X.509: the fleet CA, the server certificate, a client certificate per device
enroll.py       ``fleet enroll``: one device's certificate and ``agent.toml``
revoke.py       ``fleet revoke``: a lost device's certificate stops opening the broker
"""
