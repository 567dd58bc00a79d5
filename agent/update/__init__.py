"""Updates on the device: the state machine and the actions behind it.

machine.py     the transition table (pure): states, events, what each state does
updater.py     performs the actions: fetch, verify, self-test, swap, roll back
store.py       the versions on disk and the update journal
transfer.py    chunked downloads over MQTT, checked against signed metadata
http_fetch.py  chunk downloads from HTTP(S) and S3 mirrors
tuf_mqtt.py    python-tuf's ngclient fetching metadata over MQTT
selftest.py    the golden-vector self-test before a swap
serials.py     which assignment serials were already applied
"""
