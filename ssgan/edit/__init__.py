"""Editing generated faces and real photographs (docs/editing.md).

``editing`` (latent sampling, mixing classes' codes, interpolation, the composition), ``photos``
(reading photographs and their labels), ``perceptual`` (MS-SSIM, LPIPS-VGG), ``inversion``
(optimisation inversion and pivotal tuning), ``directions`` (attribute directions restricted to
classes).
"""
