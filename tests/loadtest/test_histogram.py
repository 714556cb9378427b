"""Histograms: close to the exact percentiles, small, and exactly mergeable."""

from __future__ import annotations

import random

import orjson

from tether.loadtest import SUB_BUCKET_BITS, Histogram


def test_histogram_percentiles_are_within_one_percent_of_the_exact_ones():
    rng = random.Random(7)
    values = [int(rng.lognormvariate(8, 1.5)) for _ in range(20_000)]
    h = Histogram()
    for v in values:
        h.record(v)
    values.sort()
    for q in (50, 90, 99, 99.9):
        exact = values[max(0, int(len(values) * q / 100 + 0.999999) - 1)]
        assert abs(h.percentile(q) - exact) <= exact / (1 << SUB_BUCKET_BITS) + 1
    assert h.percentile(100) == values[-1] == h.max
    assert h.min == values[0]


def test_merging_histograms_equals_recording_everything_in_one():
    rng = random.Random(3)
    parts = [[rng.randrange(1, 10**7) for _ in range(2000)] for _ in range(3)]
    whole, merged = Histogram(), Histogram()
    for part in parts:
        h = Histogram()
        for v in part:
            h.record(v)
            whole.record(v)
        merged.merge(Histogram.from_dict(orjson.loads(orjson.dumps(h.to_dict()))))
    assert merged.counts == whole.counts
    assert (merged.count, merged.total, merged.min, merged.max) == (
        whole.count,
        whole.total,
        whole.min,
        whole.max,
    )


def test_a_histogram_of_a_million_wide_ranging_values_stays_small():
    rng = random.Random(1)
    h = Histogram()
    for _ in range(1_000_000):
        h.record(rng.randrange(0, 1 << 40))
    assert len(h.counts) < 40 << SUB_BUCKET_BITS


def test_every_value_lies_inside_the_range_of_its_bucket():
    for v in [*range(0, 2000), *(random.Random(5).randrange(1 << 45) for _ in range(5000))]:
        low, high = Histogram.bucket_range(Histogram.bucket(v))
        assert low <= v <= high
