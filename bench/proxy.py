"""``serstream proxy``: how many messages a second it forwards, as a daemon sends them."""

from __future__ import annotations

import time

import zmq

from bench.common import free_endpoint, spawn

LABELS = ("neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise")


def forwarding(quick: bool) -> list[str]:
    """Real emotion messages (8 labels, ~620 bytes) from one raw publisher, through a
    ``serstream proxy`` process, to one raw subscriber that does not parse them: the rate
    is a lower bound of the proxy's own, since sender and receiver are Python."""
    from serstream.events import EmotionEvent, Stamper

    n = 50_000 if quick else 200_000
    body = EmotionEvent(source="mic:bench", segment=0, final=True, start=0.0, end=1.0, wall_start=0.0,
                        wall_end=1.0, label="sad", confidence=0.9, probabilities={lab: 0.125 for lab in LABELS},
                        model="serstream-whisper", voice=None, vad_delay_ms=450.0, processing_ms=20.0, features_ms=1.0,
                        inference_ms=19.0)
    stamper = Stamper()
    messages = [stamper.stamp(body) for _ in range(min(n, 20_000))]
    size = len(messages[0].data)
    daemon, front = free_endpoint(), free_endpoint()
    proc = spawn("proxy", "--connect", daemon, "--bind", front, "--hwm", "100000")
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.bind(daemon)
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"emotion")
    sub.connect(front)
    try:
        assert pub.poll(60_000, zmq.POLLIN), "the proxy never subscribed"
        pub.recv()  # the subscription, forwarded up by the proxy
        time.sleep(0.2)
        got, t_first, t_last = 0, None, None
        sent = 0
        while sent < n or got < sent:
            while sent < n and sent - got < 5000:  # stay well inside the queues: measure, not drop
                m = messages[sent % len(messages)]
                pub.send_multipart([b"emotion", m.data])
                sent += 1
            if not sub.poll(10_000, zmq.POLLIN):
                break
            while sub.poll(0, zmq.POLLIN):
                sub.recv_multipart()
                got += 1
                t_last = time.perf_counter()
                t_first = t_first or t_last
    finally:
        pub.close(0)
        sub.close(0)
        proc.terminate()
        proc.wait(timeout=30)
    rate = (got - 1) / (t_last - t_first) if got > 1 else 0.0
    return ["| messages | size | received | forwarded per second |", "|---|---|---|---|",
            f"| {n:,} | {size} bytes | {got:,} | **{rate:,.0f}** |", "",
            "One `serstream proxy` process between a raw ZeroMQ publisher and subscriber (Python, no JSON "
            "parsing), at most 5,000 messages in flight; a lower bound of what the proxy forwards. A daemon "
            "sends about one emotion event a second while someone speaks, and a stats message every 5 s."]
