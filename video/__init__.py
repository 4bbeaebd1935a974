"""Video clips in memory: probe, plan segments, stylize a segment, join the pieces with the sound.

Runtime-free of the model (PyAV, numpy, Pillow and ``imaging`` only): the gateway probes uploads
with it, the workers run segments and joins with it, and the engine reaches it only as the
``stylize(frame) -> frame`` callable a worker passes in. Imports no other project package but
``imaging``, no model runtime, no web, queue or store; this ``__init__`` stays empty of imports.

- ``video.source``      bytes or a stream in memory, the byte limit, the container by its leading bytes
- ``video.probe``       container, codec, size, rotation, rate, exact frame count, duration, sound; limits
- ``video.frametable``  every frame's timestamp and duration, and the keyframes, from the packets
- ``video.segments``    the plan of about two-second segments; one segment run; a frame as a still
- ``video.decoding``    decode exactly a range of frames from the keyframe before it
- ``video.picture``     decoded frame <-> the model's upright RGB array; the output size
- ``video.encoding``    H.264 pieces in memory (libx264 settings)
- ``video.mp4``         MP4 muxing with exact timescales, index first
- ``video.join``        pieces + original sound -> one MP4
- ``video.audio``       sound copied where MP4 carries it, else AAC
- ``video.flicker``     mean absolute change between consecutive frames, output against input
- ``video.errors``      what can be wrong with a clip, told safely to a user
"""
