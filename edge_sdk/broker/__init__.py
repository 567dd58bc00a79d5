"""The fleet's Mosquitto broker and its PKI (host only).

setup.py    ``edge-sdk broker init``: configuration, ACL, certificates in one directory
pki.py      X.509: the fleet CA, the server certificate, a client certificate per device
enroll.py   ``fleet enroll``: one device's certificate and ``agent.toml``
revoke.py   ``fleet revoke``: a lost device's certificate stops opening the broker
"""
