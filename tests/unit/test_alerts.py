"""The spike detector on hand-made windows: rate against the rolling baseline, minimum
volumes, per source and per kind."""

from __future__ import annotations

from streamapp.alerts import AlertRules, detect, detect_all

RULES = AlertRules(min_volume=20, factor=2.0, min_rate=0.2, baseline_windows=3)


def hate_windows(*per_window: tuple[int, int], source: str = "twitter") -> dict:
    """(hateful, messages) per 60 s window, oldest first."""
    return {
        (60.0 * i, 60.0 * i + 59.999): {source: {"messages": m, "hateful": h}}
        for i, (h, m) in enumerate(per_window)
    }


def test_a_window_well_above_its_baseline_alerts_once_per_window() -> None:
    (alert,) = detect("hate", hate_windows((3, 30), (2, 30), (3, 30), (12, 30)), RULES, 60, 1e9)
    assert (alert.kind, alert.source, alert.count, alert.volume) == ("hate", "twitter", 12, 30)
    assert alert.rate == 0.4 and alert.baseline_rate == round(8 / 90, 4)
    assert alert.window_start == "1970-01-01T00:03:00+00:00"
    assert alert.window_end == "1970-01-01T00:04:00+00:00"
    assert alert.id == "hate:twitter:1970-01-01T00:03:00+00:00"


def test_no_alert_below_the_thresholds() -> None:
    # Not twice the baseline (20% vs 12%).
    assert detect("hate", hate_windows((4, 30), (4, 30), (3, 30), (6, 30)), RULES, 60, 0) == []
    # Twice the baseline, but under the minimum rate (10% vs 3%).
    assert detect("hate", hate_windows((1, 30), (1, 30), (1, 30), (3, 30)), RULES, 60, 0) == []
    # Too few messages in the window, or in its baseline.
    assert detect("hate", hate_windows((0, 30), (0, 30), (10, 19)), RULES, 60, 0) == []
    assert detect("hate", hate_windows((0, 10), (0, 9), (15, 30)), RULES, 60, 0) == []
    # No history at all.
    assert detect("hate", hate_windows((30, 30)), RULES, 60, 0) == []


def test_the_baseline_is_the_last_windows_only() -> None:
    # A hateful first window is out of the 3-window baseline: the spike still counts.
    windows = hate_windows((30, 30), (0, 30), (0, 30), (0, 30), (10, 30))
    assert [a.baseline_rate for a in detect("hate", windows, RULES, 60, 0)] == [0.0]


def test_sources_and_kinds_are_judged_apart() -> None:
    windows = hate_windows((0, 30), (0, 30), (15, 30))
    for rng, (h, m) in zip(sorted(windows), [(9, 30), (9, 30), (9, 30)], strict=True):
        windows[rng]["bluesky"] = {"messages": m, "hateful": h}
    assert [a.source for a in detect("hate", windows, RULES, 60, 0)] == ["twitter"]
    sentiment = {
        (0.0, 59.999): {"news": {"negative": 5, "neutral": 20, "positive": 5}},
        (60.0, 119.999): {"news": {"negative": 5, "neutral": 20, "positive": 5}},
        (120.0, 179.999): {"news": {"negative": 25, "neutral": 4, "positive": 1}},
    }
    (alert,) = detect("negative", sentiment, RULES, 60, 0)
    assert (alert.kind, alert.source, alert.count, alert.volume) == ("negative", "news", 25, 30)


def test_a_tracked_term_spikes_on_its_own_and_alerts_under_its_own_id() -> None:
    # 100 messages a window, 10 hateful; the term's 10 a window go from 1 to 8 hateful: the
    # source's rate moves from 10% to 17% (no alert), the term's from 10% to 80%.
    items = []
    for i, (hateful, term_hateful) in enumerate([(10, 1), (10, 1), (10, 1), (17, 8)]):
        w = (60.0 * i, 60.0 * i + 59.999)
        cells = {
            "|messages": 100,
            "|hateful": hateful,
            "term=net zero|messages": 20,
            "term=net zero|hateful": term_hateful * 2,
            "term=quiet|messages": 20,
        }
        items.append((("twitter|tweets|0", w), {"o": 1, "c": cells}))
    (alert,) = detect_all("hate", items, ["net zero", "quiet"], RULES, 60, 0)
    assert (alert.source, alert.term, alert.count, alert.volume) == ("twitter", "net zero", 16, 20)
    assert alert.id == "hate:twitter:net zero:1970-01-01T00:03:00+00:00"
    assert alert.document()["term"] == "net zero"
    # The same windows for all messages alone: no alert, and an overall one has no term.
    assert detect_all("hate", items, [], RULES, 60, 0) == []
