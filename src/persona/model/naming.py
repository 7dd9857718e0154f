"""Persona names that survive retraining, and names for segments nobody has named yet.

Clusters are matched to reference personas (the catalogue, or the production model's own
personas) by Hungarian matching on centroids in the new model's standardized feature space.
A cluster farther than ``max_distance`` from every reference gets a new name, read off its
profile: the features that set it apart from the other customers, in words
(``segment_evidence`` measures them, ``match_personas`` names from them). A retrain that
matches a reference keeps that reference's name, whether it came from the catalogue, from a
profile or from a person.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from persona.data.catalogue import Catalogue
from persona.data.schema import DatasetSchema

logger = logging.getLogger(__name__)

# The evidence rule (see ``segment_evidence``): a feature sets a segment apart when its effect
# is at least MIN_EFFECT (half a standard deviation, Cohen's "medium"); from STRONG_EFFECT on
# it is "very" high or low.
MIN_EFFECT = 0.5
STRONG_EFFECT = 1.5
# A count-like column whose segment mean is at most this is "no <feature>" (>= 90% zeros).
NEAR_ZERO_MEAN = 0.1
MAX_PARTS = 3
MAX_NAME_LENGTH = 60
SEPARATOR = " · "

_SPEND_PREFIXES = {"mnt", "amt", "amount"}
_COUNT_PREFIXES = {"num", "nb", "cnt", "n"}
_PERIOD_WORDS = {"annual", "yearly", "monthly", "weekly", "total"}
_PRODUCT_WORDS = {"product", "products", "prod", "prods"}
_ABBREVIATIONS = {"avg": "average"}
_AGE_WORDS = {"very low": "very young", "low": "young", "high": "older", "very high": "senior"}
_FLAG_LEVELS = {"yes", "no", "true", "false", "y", "n", "t", "f"}


@dataclass(frozen=True)
class Persona:
    persona_id: int
    name: str
    description: str
    numeric: dict[str, float]
    categorical: dict[str, str]
    share: float = 0.0
    matched_distance: float | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> Persona:
        return cls(**raw)


def catalogue_personas(catalogue: Catalogue) -> list[Persona]:
    """Reference personas from the catalogue: mean of each numeric, most likely level."""
    return [
        Persona(
            persona_id=index,
            name=spec.name,
            description=spec.description,
            numeric={f: mean for f, (mean, _sd) in spec.numeric.items()},
            categorical={f: max(p, key=p.get) for f, p in spec.categorical.items()},
            share=spec.share,
        )
        for index, spec in enumerate(catalogue.personas)
    ]


def cluster_profiles(
    frame: pd.DataFrame, labels: np.ndarray, schema: DatasetSchema
) -> pd.DataFrame:
    """Per-cluster centroid in original units: numeric means, categorical modes, share."""
    grouped = frame.assign(_cluster=labels).groupby("_cluster")
    profile = grouped[list(schema.numeric)].mean()
    for name in schema.categorical:
        profile[name] = grouped[name].agg(
            lambda s: s.mode().iloc[0] if not s.mode().empty else None
        )
    profile["share"] = grouped.size() / len(frame)
    return profile.sort_index()


def feature_words(name: str, unit: str = "") -> str:
    """A column name as words, so names read as text: ``annual_income`` -> "income",
    ``MntWines`` -> "wine spend", ``NumWebPurchases`` -> "number of web purchases".

    The rule is small on purpose, so a name is predictable from its column: split snake and
    camel case, lower case; drop a last word that is the schema unit (``recency_days``, unit
    days -> "recency"; ``web_visits``, unit visits/month, stays) and a leading period word
    (annual, monthly, total); an amount prefix (Mnt, Amt) becomes "<item> spend" (product
    words dropped, the item singular); a count prefix (Num, Nb, Cnt, N) becomes "number of";
    "avg" is "average".
    """
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name)
    words = [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]
    if not words:
        return name
    if len(words) > 1 and unit and words[-1] == unit.strip().lower():
        words = words[:-1]
    if len(words) > 1 and words[0] in _PERIOD_WORDS:
        words = words[1:]
    if len(words) > 1 and words[0] in _SPEND_PREFIXES:
        item = [w for w in words[1:] if w not in _PRODUCT_WORDS] or words[1:]
        last = item[-1]
        if len(last) > 3 and last.endswith("s") and not last.endswith("ss"):
            item[-1] = last[:-1]
        words = [*item, "spend"]
    elif len(words) > 1 and words[0] in _COUNT_PREFIXES:
        words = ["number", "of", *words[1:]]
    return " ".join(_ABBREVIATIONS.get(w, w) for w in words)


@dataclass(frozen=True)
class Evidence:
    """How one feature sets a segment apart from the other customers, in numbers and words."""

    feature: str
    words: str  # the feature in words: "wine spend"
    phrase: str  # the difference in words, as a name part: "very high wine spend", "mostly online"
    effect: float  # signed effect size, see segment_evidence
    segment: float  # the segment's mean, or the level's share in the segment
    rest: float  # the same among all other customers
    band: str = ""  # numeric: "very high" | "high" | "low" | "very low" | "no"; else ""
    unit: str = ""
    level: str | None = None  # categorical: the over-represented level

    @property
    def stands_out(self) -> bool:
        return abs(self.effect) >= MIN_EFFECT

    def sentence(self) -> str:
        """The evidence in a few words: "income 76,100 EUR vs 52,000 elsewhere", "wine spend 651
        EUR vs 210 elsewhere (3.1×)", "channel 'online' 72% vs 18% elsewhere"."""
        if self.level is not None:
            return f"{self.words} {self.level!r} {self.segment:.0%} vs {self.rest:.0%} elsewhere"
        unit = f" {self.unit}" if self.unit else ""
        text = f"{self.words} {_number(self.segment)}{unit} vs {_number(self.rest)} elsewhere"
        if self.rest >= 1 and self.segment / self.rest >= 2:  # not of small counts (0.9 vs 0.06)
            text += f" ({self.segment / self.rest:.1f}×)"
        return text

    def to_dict(self) -> dict:
        return asdict(self)


def _number(value: float) -> str:
    """Three significant digits, thousands separated: 76,100 / 651 / 5.67 / 0.04."""
    if not math.isfinite(value) or value == 0:
        return f"{value:g}"
    digits = 2 - int(math.floor(math.log10(abs(value))))
    rounded = round(value, digits)
    if digits <= 0:
        return f"{rounded:,.0f}"
    return f"{rounded:,.{min(digits, 2)}f}".rstrip("0").rstrip(".")


def _numeric_phrase(words: str, effect: float, segment: float, count_like: bool) -> tuple[str, str]:
    if count_like and effect < 0 and segment <= NEAR_ZERO_MEAN:
        return "no", f"no {words}"
    size = "very " if abs(effect) >= STRONG_EFFECT else ""
    band = size + ("high" if effect > 0 else "low")
    if words == "age":
        return band, _AGE_WORDS[band]
    return band, f"{band} {words}"


def _level_phrase(words: str, level: str, share: float) -> str:
    text = level.lower() if level.istitle() and " " not in level else level
    if text.lower() in _FLAG_LEVELS or re.fullmatch(r"[-+.0-9]+", text):
        text = f"{words} {text}"  # "mostly 1" says nothing; "mostly complain 1" does
    return f"{'mostly' if share >= 0.5 else 'often'} {text}"


def _cohens_h(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return 2 * np.arcsin(np.sqrt(np.clip(p, 0, 1))) - 2 * np.arcsin(np.sqrt(np.clip(q, 0, 1)))


def segment_evidence(
    frame: pd.DataFrame, labels: Sequence[Hashable] | np.ndarray, schema: DatasetSchema
) -> dict[Hashable, tuple[Evidence, ...]]:
    """Every feature's difference between each segment and the rest, strongest first.

    The rule, per segment against all customers outside it:

    * numeric: effect = (segment mean - rest mean) / the feature's sd over all customers. The
      sd over all customers, not within segments, because clusters are tight by construction
      (within-segment sds would call everything "very"), and it is the scale of the profile
      plot's z-scores. Words by band: |effect| >= 1.5 "very high/low", >= 0.5 "high/low";
      a count-like column (non-negative whole numbers) whose segment mean is <= 0.1 is
      "no <feature>"; a column called age is "young/older".
    * categorical: the level most over-represented in the segment, effect = Cohen's h of its
      share in the segment vs the rest (2·asin√p - 2·asin√q, on the same 0.5 = medium scale).
      Words: "mostly <level>" when the segment is at least half that level, else "often".

    A feature sets the segment apart when |effect| >= MIN_EFFECT (0.5). Missing values are left
    out of both sides. Labels can be cluster ids or persona names.
    """
    labels = np.asarray(labels)
    clusters = list(pd.unique(labels))
    found: dict[Hashable, list[Evidence]] = {c: [] for c in clusters}
    for feature, spec in schema.numeric.items():
        values = pd.to_numeric(frame[feature], errors="coerce").astype("float64")
        known = values.dropna()
        if len(known) < 2 or not known.std(ddof=1) > 0:
            continue
        sd = float(known.std(ddof=1))
        count_like = bool(known.min() >= 0 and (spec.integer or (known == known.round()).all()))
        words = feature_words(feature, spec.unit)
        grouped = values.groupby(labels).agg(["sum", "count"])
        total_sum, total_n = float(known.sum()), len(known)
        for cluster in clusters:
            seg_sum, seg_n = grouped.loc[cluster, "sum"], int(grouped.loc[cluster, "count"])
            if seg_n == 0 or seg_n == total_n:
                continue
            segment = float(seg_sum / seg_n)
            rest = float((total_sum - seg_sum) / (total_n - seg_n))
            effect = (segment - rest) / sd
            band, phrase = _numeric_phrase(words, effect, segment, count_like)
            found[cluster].append(
                Evidence(feature, words, phrase, effect, segment, rest, band, spec.unit)
            )
    for feature in schema.categorical:
        values = frame[feature].astype(object)
        known = values.notna().to_numpy()
        if not known.any():
            continue
        counts = pd.crosstab(labels[known], values[known].astype(str).to_numpy())
        total, n_all = counts.sum(axis=0), counts.to_numpy().sum()
        words = feature_words(feature)
        for cluster in clusters:
            if cluster not in counts.index:
                continue
            inside = counts.loc[cluster]
            n_in = inside.sum()
            if n_in == n_all:
                continue
            share, rest = inside / n_in, (total - inside) / (n_all - n_in)
            h = pd.Series(_cohens_h(share.to_numpy(), rest.to_numpy()), index=counts.columns)
            level = str(h.idxmax())
            found[cluster].append(
                Evidence(
                    feature,
                    words,
                    _level_phrase(words, level, float(share[level])),
                    float(h[level]),
                    float(share[level]),
                    float(rest[level]),
                    level=level,
                )
            )
    return {
        cluster: tuple(sorted(items, key=lambda e: (-abs(e.effect), e.feature)))
        for cluster, items in found.items()
    }


def distinguishing(evidence: Sequence[Evidence]) -> tuple[Evidence, ...]:
    """The features that set a segment apart (|effect| >= MIN_EFFECT), strongest first."""
    return tuple(e for e in evidence if e.stands_out)


def _mergeable(a: Evidence, b: Evidence) -> bool:
    """Whether two "<band> <item> <noun>" phrases with one noun and direction read as one part:
    "high wine & meat spend", up to three items, under the weakest band."""
    wa, wb = a.words.split(), b.words.split()
    return (
        a.band not in ("", "no")
        and b.band not in ("", "no")
        and len(wa) == len(wb) == 2
        and wa[1] == wb[1]
        and (a.effect > 0) == (b.effect > 0)
    )


def _parts(features: Sequence[Evidence]) -> list[list[Evidence]]:
    parts: list[list[Evidence]] = []
    for evidence in features:
        host = next((p for p in parts if len(p) < 3 and _mergeable(p[0], evidence)), None)
        if host is not None:
            host.append(evidence)
        else:
            parts.append([evidence])
    return parts


def _part_text(part: Sequence[Evidence]) -> str:
    if len(part) == 1:
        return part[0].phrase
    weakest = min(part, key=lambda e: abs(e.effect)).band
    items = [e.words.split()[0] for e in part]
    return f"{weakest} {', '.join(items[:-1])} & {items[-1]} {part[0].words.split()[1]}"


def _text(features: Sequence[Evidence]) -> tuple[str, int]:
    """The name's text, uncapitalized and untruncated, and how many parts it has."""
    parts = _parts(features)
    return SEPARATOR.join(_part_text(p) for p in parts), len(parts)


def _compose(features: Sequence[Evidence]) -> str:
    text, _ = _text(features)
    if len(text) > MAX_NAME_LENGTH:
        text = text[: MAX_NAME_LENGTH - 1].rstrip() + "…"
    return text[:1].upper() + text[1:]


def _fits(features: Sequence[Evidence], max_parts: int | None) -> bool:
    text, parts = _text(features)
    return len(text) <= MAX_NAME_LENGTH and (max_parts is None or parts <= max_parts)


def name_features(evidence: Sequence[Evidence]) -> tuple[Evidence, ...]:
    """The features a descriptive name uses: the strongest distinguishing ones, in order, while
    they make at most MAX_PARTS parts and MAX_NAME_LENGTH characters (the first always)."""
    chosen = distinguishing(evidence)
    count = 1 if chosen else 0
    while count < len(chosen) and _fits(chosen[: count + 1], MAX_PARTS):
        count += 1
    return chosen[:count]


def describe(features: Sequence[Evidence]) -> str:
    """One sentence of evidence: "Named from its profile: income 76,100 EUR vs 52,000
    elsewhere; wine spend 651 EUR vs 210 elsewhere (3.1×)."."""
    return "Named from its profile: " + "; ".join(e.sentence() for e in features) + "."


def descriptive_names(
    evidence: Mapping[Hashable, Sequence[Evidence]],
    taken: Sequence[str] = (),
    shares: Mapping[Hashable, float] | None = None,
) -> dict[Hashable, tuple[str, tuple[Evidence, ...]]]:
    """A unique name per segment that has distinguishing features (others are left out).

    Each starts from ``name_features``. While names clash (with each other, or with ``taken``:
    the reference personas' names), every clashing segment adds its next distinguishing
    feature that the segments it clashes with do not share in the same words, dropping its
    weaker earlier ones (never the strongest) when the name would pass MAX_NAME_LENGTH. What
    still clashes when no feature is left gets " (2)", " (3)", the larger segment keeping the
    plain name unless it is taken. Returns the name and its features.
    """
    ranked = {c: distinguishing(e) for c, e in evidence.items() if distinguishing(e)}
    chosen = {c: list(name_features(e)) for c, e in ranked.items()}
    following = {c: len(chosen[c]) for c in ranked}
    names = {c: _compose(chosen[c]) for c in ranked}
    reserved = {t.casefold() for t in taken}

    def clashes() -> dict[Hashable, list[Hashable]]:
        """Each clashing segment with the others of the same name."""
        groups: dict[str, list[Hashable]] = {}
        for cluster, name in names.items():
            groups.setdefault(name.casefold(), []).append(cluster)
        return {
            c: [o for o in group if o != c]
            for key, group in groups.items()
            if len(group) > 1 or key in reserved
            for c in group
        }

    while True:
        tried = False
        for cluster, others in clashes().items():
            # a feature the others say in the same words cannot tell them apart: skip it
            phrases = [{e.phrase for e in ranked[o]} for o in others]
            shared = set.intersection(*phrases) if phrases else set()
            while (
                following[cluster] < len(ranked[cluster])
                and ranked[cluster][following[cluster]].phrase in shared
            ):
                following[cluster] += 1
            if following[cluster] >= len(ranked[cluster]):
                continue
            more = [*chosen[cluster], ranked[cluster][following[cluster]]]
            following[cluster] += 1
            tried = True
            while not _fits(more, None) and len(more) > 2:
                del more[-2]  # room for the new feature: drop the weakest one before it
            if _fits(more, None):
                chosen[cluster], names[cluster] = more, _compose(more)
        if not tried:
            break
    size = shares or {}
    final: dict[Hashable, str] = {}
    seen = set(reserved)
    for cluster in sorted(names, key=lambda c: (-size.get(c, 0.0), str(c))):
        name, n = names[cluster], 1
        while (name if n == 1 else f"{name} ({n})").casefold() in seen:
            n += 1
        final[cluster] = name if n == 1 else f"{name} ({n})"
        seen.add(final[cluster].casefold())
    return {c: (final[c], tuple(chosen[c])) for c in names}


def _as_rows(
    numeric: Sequence[dict], categorical: Sequence[dict], schema: DatasetSchema
) -> pd.DataFrame:
    rows = pd.DataFrame([{**n, **c} for n, c in zip(numeric, categorical, strict=True)])
    for name in schema.features:
        if name not in rows.columns:
            rows[name] = np.nan
    frame = rows[schema.features].copy()
    for name in schema.categorical:
        frame[name] = frame[name].astype(object)
    return frame


def match_personas(
    profiles: pd.DataFrame,
    references: Sequence[Persona],
    preprocessor,
    schema: DatasetSchema,
    max_distance: float,
    new_name_prefix: str,
    evidence: Mapping[int, Sequence[Evidence]] | None = None,
) -> dict[int, Persona]:
    """Map each cluster label to a Persona: the reference's name when one is close, else a new one.

    A new persona is named from ``evidence`` (``segment_evidence`` of the training rows) by
    ``descriptive_names``, unique against every reference name; without evidence, or when no
    feature sets the segment apart, it is "<new_name_prefix> N". Every persona keeps its
    distinguishing evidence in ``extra["evidence"]`` (the name's features for new names).
    """
    clusters = list(profiles.index)
    cluster_rows = _as_rows(
        [profiles.loc[c, list(schema.numeric)].to_dict() for c in clusters],
        [profiles.loc[c, list(schema.categorical)].to_dict() for c in clusters],
        schema,
    )
    Z_clusters = preprocessor.transform(cluster_rows)
    mapping: dict[int, Persona] = {}
    assigned: dict[int, tuple[Persona, float]] = {}
    if references:
        ref_rows = _as_rows(
            [r.numeric for r in references], [r.categorical for r in references], schema
        )
        Z_refs = preprocessor.transform(ref_rows)
        cost = np.linalg.norm(Z_clusters[:, None, :] - Z_refs[None, :, :], axis=2)
        for row, col in zip(*linear_sum_assignment(cost), strict=True):
            if cost[row, col] <= max_distance:
                assigned[row] = (references[col], float(cost[row, col]))
    evidence = evidence or {}
    unmatched = [c for row, c in enumerate(clusters) if row not in assigned]
    described = descriptive_names(
        {int(c): evidence[int(c)] for c in unmatched if int(c) in evidence},
        taken=[r.name for r in references],
        shares={int(c): float(profiles.loc[c, "share"]) for c in clusters},
    )
    next_id = max((r.persona_id for r in references), default=-1) + 1
    new_count = sum(1 for r in references if r.name.startswith(new_name_prefix))
    for row, cluster in enumerate(clusters):
        numeric = {k: float(v) for k, v in profiles.loc[cluster, list(schema.numeric)].items()}
        categorical = {
            k: str(v) for k, v in profiles.loc[cluster, list(schema.categorical)].items()
        }
        share = float(profiles.loc[cluster, "share"])
        features = name_features(evidence.get(int(cluster), ()))
        if row in assigned:
            ref, distance = assigned[row]
            persona_id, name, description = ref.persona_id, ref.name, ref.description
        elif int(cluster) in described:
            name, features = described[int(cluster)]
            persona_id, distance, description = next_id, None, describe(features)
            next_id += 1
            logger.info("new segment %s named %r from its profile", cluster, name)
        else:
            new_count += 1
            persona_id, distance, name = next_id, None, f"{new_name_prefix} {new_count}"
            description = (
                "A segment that matches no known persona; review its profile and name it."
                if not evidence
                else "A segment that matches no known persona and that no feature sets apart"
                f" from the other customers (every effect is under {MIN_EFFECT});"
                " review its profile and name it."
            )
            next_id += 1
        extra = {"evidence": [e.to_dict() for e in features]} if evidence else {}
        mapping[int(cluster)] = Persona(
            persona_id, name, description, numeric, categorical, share, distance, extra
        )
    return mapping
