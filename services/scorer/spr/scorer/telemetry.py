"""Prometheus metrics of the scorer, in a registry of their own (one per app or worker, never global).

``source`` labels say where a scoring came from: ``http`` (POST /score) or ``queue`` (the worker).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from spr.shared.scoring_api import ScoreResponse

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SCORE_BUCKETS = (-0.5, -0.25, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ScorerMetrics:
    """Request counts and latencies, scoring volume, pairs, score distributions, queue lag."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "spr_scorer_http_requests",
            "HTTP requests by route and status code.",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "spr_scorer_http_request_seconds",
            "HTTP request latency in seconds, by route.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.candidates = Counter(
            "spr_scorer_candidates_scored", "Candidate descriptions scored.", ["source"], registry=r
        )
        self.pairs = Counter("spr_scorer_pairs_made", "Preference pairs made.", ["source"], registry=r)
        self.pairs_skipped = Counter(
            "spr_scorer_pairs_skipped",
            "Regions that gave no pair, by reason.",
            ["source", "reason"],
            registry=r,
        )
        self.scores = Histogram(
            "spr_scorer_score",
            "Scores of candidates as written: semantic (S_sem), localization (S_loc) and total.",
            ["kind"],
            buckets=_SCORE_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "spr_scorer_batch_size",
            "Items per batched model forward, by batcher.",
            ["batcher"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.queue_lag = Histogram(
            "spr_scorer_queue_lag_seconds",
            "Seconds from a candidate group's publication to the start of its scoring (worker).",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.queue_backlog = Gauge(
            "spr_scorer_queue_backlog",
            "Candidate groups waiting or in progress on the input stream, read at scrape time.",
            ["stream"],
            registry=r,
        )
        self.refused = Counter(
            "spr_scorer_refused",
            "Requests (http) and candidate groups (queue) refused by a limit, by reason: too_large "
            "(body), too_many_candidates, too_many_objects, too_many_box_pairs, image_too_large, "
            "pixel_budget, auth, header_timeout, body_timeout.",
            ["source", "reason"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "spr_scorer_groups_dead_lettered", "Candidate groups sent to the dead-letter stream.", registry=r
        )

    def observe_batch(self, batcher: str, size: int) -> None:
        self.batch_size.labels(batcher).observe(size)

    def observe_scores(self, source: str, response: ScoreResponse) -> None:
        """Record one scored region: candidate count, score distributions, pair or skip reason."""
        self.candidates.labels(source).inc(len(response.candidates))
        # One labels() lookup per kind and region, not per candidate: each takes a lock and checks
        # its arguments, which cost more than the observations themselves (~40 us per region of 8).
        localization, total = self.scores.labels("localization"), self.scores.labels("total")
        semantic = None
        for candidate in response.candidates:
            if candidate.semantic is not None:
                semantic = semantic or self.scores.labels("semantic")
                semantic.observe(candidate.semantic.score)
            localization.observe(candidate.localization.score)
            total.observe(candidate.score)
        if response.pair is not None:
            self.pairs.labels(source).inc()
        else:
            self.pairs_skipped.labels(source, response.pair_skipped_reason or "unknown").inc()
