#!/usr/bin/env python3
"""Writes music-like test material for the audio benchmarks: a few detuned
partials with an envelope per beat and some noise, so FLAC works about as
hard as on a real stem. Usage: bench-stem.py OUT.wav SECONDS (48 kHz stereo,
16-bit; the same bytes on every run)."""
import math, random, struct, sys, wave
path, secs = sys.argv[1], int(sys.argv[2])
rate = 48000
random.seed(7)
w = wave.open(path, "wb"); w.setnchannels(2); w.setsampwidth(2); w.setframerate(rate)
notes = [110.0, 164.8, 220.0, 277.2, 329.6]
chunk = []
for n in range(secs * rate):
    t = n / rate
    beat = (t * 2.0) % 1.0
    env = math.exp(-4.0 * beat)
    f = notes[int(t * 2.0) % len(notes)]
    s = env * (0.4 * math.sin(2 * math.pi * f * t) + 0.2 * math.sin(2 * math.pi * 2.01 * f * t))
    s += 0.05 * (random.random() - 0.5)
    l = int(max(-1.0, min(1.0, s)) * 30000)
    r = int(max(-1.0, min(1.0, 0.9 * s)) * 30000)
    chunk.append(struct.pack("<hh", l, r))
    if len(chunk) == 48000:
        w.writeframes(b"".join(chunk)); chunk = []
w.writeframes(b"".join(chunk)); w.close()
