#!/usr/bin/env python3
"""A bot in Python: receives the events `shardmesh consumer --sink http://...` POSTs.

    python3 examples/python/receiver.py --port 8000 --log events.jsonl
    shardmesh --config shardmesh.toml consumer --group bot --sink http://127.0.0.1:8000/events

Standard library only (written for Python 3.11). What the consumer node expects of it:

- One POST per event, `Content-Type: application/json`: an object with `shard`,
  `session`, `seq` (together the delivery id), `event_type`, `guild_id` (a string or
  null), `partition`, `offset`, ... and `payload`, the gateway frame as Discord sent it.
- Answer 2xx once the event is handled. Anything else, or no answer within the
  consumer's `--sink-timeout-ms`, is a failure: the consumer retries the same event
  with backoff and, after `consumer.handler_attempts`, puts it in the dead-letter
  stream. So answer only when done, and answer 2xx to an event you choose to skip.
- Events of one shard come one at a time, in order: the next is sent only after this
  one was answered. Different partitions come at the same time, so requests are
  handled on several threads.
- A consumer node that crashes leaves its successor to send again what it handled
  since its last checkpoint: the same delivery id again. Those are answered 200 and
  not handled twice.

Replace `handle_event` with the bot's own code.
"""

import argparse
import collections
import json
import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("receiver")

# A crash repeats at most what the dead node handled since its last checkpoint
# (`consumer.checkpoint_every_events`, default 1,000 per partition), so the newest
# 100,000 ids cover any redelivery. The memory is this process's own: a receiver that
# restarts and must not repeat a side effect keeps the ids with its own state instead.
REMEMBERED_IDS = 100_000


class Deduplicator:
    """Runs each delivery id once, also when a redelivery overlaps the first attempt."""

    def __init__(self, capacity):
        self._capacity = capacity
        self._handled = collections.OrderedDict()
        self._lock = threading.Lock()
        # One lock per shard: a shard's events are in order anyway, and a redelivery
        # that comes while the killed node's request is still being handled waits for
        # it instead of running beside it. Other shards go on in parallel.
        self._shard_locks = collections.defaultdict(threading.Lock)

    def run_once(self, delivery_id, handle):
        """Calls `handle()` unless `delivery_id` was handled; False for a repeat."""
        with self._lock:
            shard_lock = self._shard_locks[delivery_id[0]]
        with shard_lock:
            with self._lock:
                if delivery_id in self._handled:
                    return False
            handle()  # an exception leaves the id unhandled: the consumer retries it
            with self._lock:
                self._handled[delivery_id] = None
                if len(self._handled) > self._capacity:
                    self._handled.popitem(last=False)
            return True


class EventLog:
    """One JSON line per handled event, appended to a file (or nothing without one)."""

    def __init__(self, path):
        self._file = open(path, "a", encoding="utf-8") if path else None
        self._lock = threading.Lock()

    def write(self, event):
        if self._file is None:
            return
        line = json.dumps(event, separators=(",", ":")) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()


def handle_event(event, events):
    """The bot's code: here it notes a `!ping` and records the event in the log."""
    message = event["payload"].get("d") or {}
    if event["event_type"] == "MESSAGE_CREATE" and message.get("content") == "!ping":
        log.info("!ping in channel %s", message["channel_id"])
    events.write(event)


class Receiver(BaseHTTPRequestHandler):
    """One request: `self.server` carries the deduplicator and the event log."""

    # HTTP/1.1 keeps the consumer's connections open between events.
    protocol_version = "HTTP/1.1"

    def handle(self):
        try:
            super().handle()
        except ConnectionError:
            # A consumer node that crashed resets its connections, idle or mid-request;
            # whoever takes its partitions over sends the unanswered event again.
            pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            event = json.loads(body)
            delivery_id = (event["shard"], event["session"], event["seq"])
        except (ValueError, KeyError, TypeError) as error:
            # Retried, then dead-lettered with this text: nothing is dropped silently.
            log.warning("refused a body that is not a shardmesh event: %r", error)
            self._answer(400, f"not a shardmesh event: {error!r}")
            return
        try:
            handled = self.server.deduplicator.run_once(
                delivery_id, lambda: handle_event(event, self.server.events)
            )
        except Exception as error:  # any failure of the bot's code: retry the event
            log.exception("event %s failed", delivery_id)
            self._answer(500, f"handler failed: {error}")
            return
        if not handled:
            log.info("duplicate delivery %s: handled before, answered 200", delivery_id)
        self._answer(200, "ok")

    def _answer(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        # One access-log line per event would drown everything else.
        pass


def serve(bind, port, log_path):
    server = ThreadingHTTPServer((bind, port), Receiver)
    server.deduplicator = Deduplicator(REMEMBERED_IDS)
    server.events = EventLog(log_path)
    host, port = server.server_address[:2]
    # With --port 0 this line says which port was taken.
    print(f"listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument(
        "--log",
        default=os.environ.get("RECEIVER_LOG"),
        help="append one JSON line per handled event here (default: $RECEIVER_LOG)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    serve(args.bind, args.port, args.log)


if __name__ == "__main__":
    main()
