"""Reading a line's Prometheus endpoint (edge status, tests, bench): no metric is created here."""

from __future__ import annotations

import urllib.request


def scrape(address: str, timeout: float = 3.0) -> dict[str, list[tuple[dict, float]]]:
    """Samples of an endpoint, by sample name: {name: [(labels, value), ...]}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    samples: dict[str, list[tuple[dict, float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def total(samples, name: str, **match) -> float:
    """The sum of a scraped metric's samples whose labels match."""
    return sum(v for labels, v in samples.get(name, []) if all(labels.get(k) == m for k, m in match.items()))


def by(samples, name: str, key: str, **match) -> dict[str, float]:
    """A scraped metric's matching samples summed per value of label `key`."""
    out: dict[str, float] = {}
    for labels, v in samples.get(name, []):
        if all(labels.get(k) == m for k, m in match.items()):
            out[labels.get(key, "")] = out.get(labels.get(key, ""), 0) + v
    return out
