"""The cost of pyzmq's multipart helpers against frame-by-frame calls on the validator's intake shape.

    python -m bench.frames_report [--n 20000] [--reps 6] [--json]

One process: a DEALER queues `--n` one-frame messages to a ROUTER over loopback TCP; the ROUTER reads
each ([identity, frame]) and answers it, either with `recv_multipart` + `send_multipart` (what the
validator did) or with `recv` + a RCVMORE check per frame + two `send`s (what it does now). The
figure is the CPU of the reading thread per message (`time.thread_time_ns`; the wait for the
messages to arrive is outside the timed part). Reps alternate the two ways; read the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import orjson
import zmq


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    n = args.n
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect("tcp://127.0.0.1:" + str(port))
    for s in (router, dealer):
        s.setsockopt(zmq.SNDHWM, 0)
        s.setsockopt(zmq.RCVHWM, 0)
        s.setsockopt(zmq.LINGER, 0)
    payload = b"x" * 300

    def multipart() -> float:
        recv, send = router.recv_multipart, router.send_multipart
        t = time.thread_time_ns()
        for _ in range(n):
            ident, frame = recv(0)
            send((ident, frame))
        return (time.thread_time_ns() - t) / n / 1e3

    def frames() -> float:
        recv, more, send = router.recv, router.getsockopt, router.send
        t = time.thread_time_ns()
        for _ in range(n):
            ident = recv(0)
            if not more(zmq.RCVMORE):
                raise SystemExit("one frame")
            frame = recv(zmq.NOBLOCK)
            if more(zmq.RCVMORE):
                raise SystemExit("more frames")
            send(ident, zmq.SNDMORE)
            send(frame)
        return (time.thread_time_ns() - t) / n / 1e3

    got: dict[str, list[float]] = {"multipart_us": [], "frames_us": []}
    ways = (("multipart_us", multipart), ("frames_us", frames))
    for k in range(args.reps):
        for name, way in ways if k % 2 == 0 else ways[::-1]:
            for _ in range(n):
                dealer.send(payload)
            assert router.poll(10_000)
            got[name].append(way())
            back = 0
            while back < n and dealer.poll(10_000):
                dealer.recv()
                back += 1
    router.close(0)
    dealer.close(0)
    ctx.term()
    medians = {k: round(statistics.median(v), 2) for k, v in got.items()}
    report = {"medians": medians, "frames_over_multipart": round(medians["frames_us"] / medians["multipart_us"], 3),
              "reps": got}
    print(orjson.dumps(report).decode() if args.json else
          "CPU us a message (read + answer): " + str(medians) + "  frames/multipart " +
          str(report["frames_over_multipart"]))


if __name__ == "__main__":
    main()
