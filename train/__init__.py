"""Training for serstream: four acted English corpora -> speaker-independent split ->
MFCC (serstream.features, on clips cut by serstream.vad) -> compact CNN -> ONNX.

``train`` imports ``serstream``; ``serstream`` never imports ``train``.
"""
