"""A small Server-Sent Events client for GET /watch (text/event-stream), on http.client: events as dicts with
id (the change index, or None), event, data (parsed JSON) and the comment lines (heartbeats) counted. Used by the
integration and systemd tests; `python3 scripts/kvsse.py PORT '/watch?prefix=p'` prints a stream's events."""
import http.client
import json
import socket


class EventStream:
    def __init__(self, port, path, headers=None, timeout_s=30, host="127.0.0.1", conn=None):
        """`conn`: an http.client connection to use instead of one to host:port (a network namespace's)."""
        self.conn = conn or http.client.HTTPConnection(host, port, timeout=timeout_s)
        self.conn.request("GET", path, headers=headers or {})
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = dict(self.response.getheaders())
        self.comments = 0
        self.last_id = None

    def body(self):
        """The whole body of a refused stream (an error answer is JSON)."""
        data = self.response.read()
        return json.loads(data) if data else None

    def next_event(self):
        """The next event, or None when the stream ended. Raises socket.timeout past the connection's timeout."""
        fields = {}
        data = []
        while True:
            line = self.response.readline()
            if not line:
                return None
            line = line.decode().rstrip("\n")
            if line == "":
                if not fields and not data:
                    continue
                if "id" in fields:
                    self.last_id = int(fields["id"])
                payload = "\n".join(data)
                return {"id": int(fields["id"]) if "id" in fields else None, "event": fields.get("event", "message"),
                        "data": json.loads(payload) if payload.startswith("{") else payload}
            if line.startswith(":"):
                self.comments += 1
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            else:
                fields[name] = value

    def wait_comments(self, count):
        """Reads until `count` comment lines (heartbeats) have arrived; False if the stream ended first."""
        while self.comments < count:
            line = self.response.readline()
            if not line:
                return False
            if line.startswith(b":"):
                self.comments += 1
        return True

    def changes(self, count):
        """The next `count` change events (put, delete, expire), skipping ready."""
        result = []
        while len(result) < count:
            event = self.next_event()
            if event is None:
                raise EOFError(f"stream ended after {len(result)} of {count} changes")
            if event["event"] in ("put", "delete", "expire"):
                result.append(event)
        return result

    def wait_ready(self):
        event = self.next_event()
        while event is not None and event["event"] != "ready":
            event = self.next_event()
        if event is None:
            raise EOFError("stream ended before ready")
        return event

    def close(self):
        try:
            self.conn.sock and self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


if __name__ == "__main__":
    import sys
    stream = EventStream(int(sys.argv[1]), sys.argv[2], timeout_s=None)
    print(stream.status, stream.headers.get("Content-Type"))
    while (event := stream.next_event()) is not None:
        print(json.dumps(event))
