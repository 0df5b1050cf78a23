"""The replica's systemd status line (sd_notify STATUS=, shown by `systemctl status`) stays current: the test
plays systemd's part with its own NOTIFY_SOCKET and reads what r1 sends while a transaction goes in doubt,
gets blocked with the master down, and is resolved once the master is back."""
import socket
import time

from crash_helpers import start_cluster, wait_healthy


class NotifySocket:
    """A datagram socket where r1 sends its sd_notify messages (as systemd's would receive them)."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []

    def wait_for(self, predicate, timeout_s, what):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                message = self.sock.recv(65536).decode()
            except socket.timeout:
                break
            self.messages.append(message)
            status = [line[7:] for line in message.splitlines() if line.startswith("STATUS=")]
            if status and predicate(status[-1]):
                return status[-1]
        raise AssertionError(f"no STATUS= line {what}; received: {self.messages}")


def test_the_status_line_follows_in_doubt_and_blocked_transactions(unstarted_cluster, tmp_path):
    c = unstarted_cluster
    notify = NotifySocket(str(tmp_path / "notify.sock"))
    start_cluster(c, env_for={"r1": {"NOTIFY_SOCKET": notify.path},
                              "master": {"KV_FAILPOINTS": "master-after-votes"}})
    notify.wait_for(lambda s: s.endswith("0 transaction(s) in doubt"), 10, "at start")
    try:
        c.http("PUT", "/kv/doubt", body=b"1", timeout_s=10)
    except OSError:
        pass
    notify.wait_for(lambda s: "1 transaction(s) in doubt" in s and "blocked" not in s, 10,
                    "with the transaction prepared and undecided")
    line = notify.wait_for(lambda s: "1 blocked" in s, 20, "once nobody reachable knows the outcome")
    assert "nobody reachable knows the outcome" in line, line
    c.start_master()
    wait_healthy(c)
    notify.wait_for(lambda s: s.endswith("0 transaction(s) in doubt"), 20, "after the master resolved it")
