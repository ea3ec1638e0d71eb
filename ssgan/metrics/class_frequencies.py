"""Class pixel frequencies of generated masks against the real labels.

f_k = the fraction of all pixels (over all images) that fall in class k, for the generated fine
masks and for the real label maps. The value is their total-variation distance
½ Σ_k |f_k^gen − f_k^real| ∈ [0, 1] (0: the same frequencies); both vectors are reported, in %.
"""

from __future__ import annotations

from ssgan.metrics.metric_utils import MetricOptions, Probes


def class_frequencies(gen: Probes, real: Probes, opts: MetricOptions) -> tuple[dict[str, float], dict]:
    f_gen, f_real = gen.areas.double().mean(0), real.areas.double().mean(0)  # in %
    tv = float((f_gen - f_real).abs().sum() / 200)
    return {"": tv}, {"generated_percent": [round(float(v), 4) for v in f_gen],
                      "real_percent": [round(float(v), 4) for v in f_real]}
