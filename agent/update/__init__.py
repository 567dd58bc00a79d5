"""Updates on the device: the state machine and the actions behind it.

machine.py         the transition table (pure): states, events, what each state does
update_state.py    one model's update: what it needs from the daemon, its journal, its outcome
version_checks.py  whether an installed version may serve (verified, intact, through its gate)
switching.py       self-test, switch, probation and rollback after an install
updater.py         recovery at start, assignments, download, verification and install
store.py           the versions on disk, the ``current`` pointer and the update journal
state_files.py     the state directory's small files, read and written defensively
chunk_cache.py     verified chunks of the update in flight
release.py         what the signed metadata says a release holds, checked before any download
transfer.py        chunked downloads (MQTT, HTTP mirrors), checked against the signed release
http_fetch.py      chunk downloads from HTTP(S) and S3 mirrors
tuf_mqtt.py        python-tuf's ngclient fetching metadata over MQTT
selftest.py        the golden-vector self-test before a swap
serials.py         which assignment serials were already applied
"""
