"""Image bytes and pictures, below every other package: sniff, decode, limits, EXIF, downscale, encode, crops.

Runtime-free on purpose (Pillow, numpy, stdlib only): the gateway validates and downscales uploads
with it before anything is queued, the workers and the command line encode results with it, and
the engine never sees a file. Imports no other package of the project, no model runtime, no web or
queue package; this ``__init__`` stays empty of imports so a module costs only what it uses.

- ``imaging.formats``  accepted formats by magic bytes, content types, file extensions
- ``imaging.heif``     HEIC/HEIF: the signature, the declared size, the decoder (pillow-heif)
- ``imaging.decode``   bytes -> upright RGB picture under the pixel limit, downscaled or cropped
- ``imaging.convert``  any Pillow mode -> 8-bit RGB
- ``imaging.encode``   picture -> png / jpeg / webp / avif bytes without metadata; pixel digests
- ``imaging.crops``    portrait framing: the square a face style runs on
- ``imaging.errors``   what can be wrong with an image, told safely to a user
"""
