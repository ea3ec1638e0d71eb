"""Provenance of what ssgan writes: what marks a picture or a video as made by a trained model.

Layer 3 of ``LAYERS`` (tests/test_layout.py): may import kernels, distributed, jsonl, model,
classes.

``record``
    :class:`~ssgan.provenance.record.Provenance`: the IPTC digital source type, the action, the
    software, the generator's digest.
``c2pa_sign``
    optional C2PA content credentials with the user's own certificate (c2pa-python, the ``c2pa``
    extra): :class:`~ssgan.provenance.c2pa_sign.C2PASigner`,
    :func:`~ssgan.provenance.c2pa_sign.read_manifest`.
``video``
    H.264 mp4 with container metadata saying synthetic (PyAV, the ``video`` extra):
    :func:`~ssgan.provenance.video.write_video`, :func:`~ssgan.provenance.video.read_frames`.
"""
