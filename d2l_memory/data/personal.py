"""Synthetic personal-memory samples: user profiles as prose documents or chat transcripts.

Each sample draws a random user profile (name, city, job, employer, pet, favourites, birthday,
partner, sibling, apartment number, allergy, car, ...) from :mod:`d2l_memory.data.wordlists` and
renders it either as

- ``"profile"``: a short prose document about "the user" (~80-200 tokens), or
- ``"transcript"``: a multi-turn chat in which the user mentions the facts casually and the
  assistant replies briefly (~150-400 tokens). ``meta["messages"]`` keeps the message list and
  the context is the transcript as ``"User: ...\\nAssistant: ..."`` lines.

Some facts are UPDATED: the old value is stated first and a later statement overrides it
("Actually, I moved from Porto to Lisbon last month."). Questions about updated facts are always
asked, and their answer is the newest value. All answers are short exact strings that occur
verbatim in the context.

Splits are decided by name: every person name (the user, partner and sibling) and every pet name
belongs to exactly one split, so no held-out profile (or person) ever appears in training.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

from . import wordlists as W
from .types import QA, Sample, approx_tokens, check_split, make_rng, partition

logger = logging.getLogger(__name__)

STYLES = ("profile", "transcript", "mixed")
QUESTION_PERSONS = ("third", "first", "named", "mixed")
#: Approximate token bounds (words * 1.3) of the rendered contexts, per style.
TOKEN_BOUNDS = {"profile": (80, 200), "transcript": (150, 400)}

#: Fields a profile can hold (``name`` is always present).
FIELDS = (
    "name",
    "city",
    "hometown",
    "job",
    "employer",
    "pet_name",
    "pet_species",
    "food",
    "colour",
    "sport",
    "birthday",
    "partner",
    "sibling",
    "apartment",
    "allergy",
    "car",
)
#: Fields whose value can be updated later in the context (the answer is then the newest value).
UPDATABLE = ("city", "job", "employer", "food", "sport", "apartment", "car")

# Question templates per field: (third person "the user", first person "I"). ``{species}`` and
# ``{rel}`` are filled from the profile.
QUESTIONS: dict[str, tuple[str, str]] = {
    "name": ("What is the user's full name?", "What is my full name?"),
    "city": ("What city does the user live in?", "What city do I live in?"),
    "hometown": ("Which city did the user grow up in?", "Which city did I grow up in?"),
    "job": ("What is the user's job?", "What is my job?"),
    "employer": ("Which company does the user work for?", "Which company do I work for?"),
    "pet_name": ("What is the name of the user's {species}?", "What is the name of my {species}?"),
    "pet_species": ("What kind of pet does the user have?", "What kind of pet do I have?"),
    "food": ("What is the user's favourite food?", "What is my favourite food?"),
    "colour": ("What is the user's favourite colour?", "What is my favourite colour?"),
    "sport": ("What is the user's favourite sport?", "What is my favourite sport?"),
    "birthday": ("When is the user's birthday?", "When is my birthday?"),
    "partner": ("What is the name of the user's {rel}?", "What is the name of my {rel}?"),
    "sibling": ("What is the name of the user's {rel}?", "What is the name of my {rel}?"),
    "apartment": ("What is the user's apartment number?", "What is my apartment number?"),
    "allergy": ("What is the user allergic to?", "What am I allergic to?"),
    "car": ("What car does the user drive?", "What car do I drive?"),
}

# Relations by the possessive of the relative's name (her / his / their).
PARTNER_RELATIONS = {
    "her": ("wife", "girlfriend", "partner", "fiancée"),
    "his": ("husband", "boyfriend", "partner", "fiancé"),
    "their": ("partner",),
}
SIBLING_RELATIONS = {
    "her": ("sister", "older sister", "younger sister", "twin sister"),
    "his": ("brother", "older brother", "younger brother", "twin brother"),
    "their": ("sibling", "older sibling", "younger sibling"),
}
NAME_SPLIT_FRACS = {"val_frac": 0.15, "test_frac": 0.15}


@dataclass
class Profile:
    """One synthetic user. ``old`` maps updated fields to their previous value."""

    first: str
    last: str
    poss: str  # possessive pronoun: her / his / their
    values: dict[str, str]
    partner_rel: str
    sibling_rel: str
    old: dict[str, str] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.first} {self.last}"

    def answer(self, f: str) -> str:
        """The current (newest) value of field ``f``."""
        return self.full_name if f == "name" else self.values[f]

    def question(self, f: str, person: str = "third") -> str:
        """Field ``f``'s question: ``person`` "third" (the user), "first" (I / my) or "named" (the first name)."""
        template = QUESTIONS[f][1 if person == "first" else 0]
        if person == "named":
            template = template.replace("the user", self.first)
        rel = self.partner_rel if f == "partner" else self.sibling_rel
        return template.format(species=self.values.get("pet_species", "pet"), rel=rel)


# ----------------------------------------------------------------------------- splits


@cache
def names_for_split(split: str) -> tuple[tuple[str, str], ...]:
    """(first name, possessive) pairs reserved for ``split``; disjoint across splits."""
    check_split(split)
    chosen = set(partition((n for n, _ in W.FIRST_NAMES), "personal-name", **NAME_SPLIT_FRACS)[split])
    return tuple(p for p in W.FIRST_NAMES if p[0] in chosen)


@cache
def pet_names_for_split(split: str) -> tuple[str, ...]:
    """Pet names reserved for ``split``; disjoint across splits."""
    check_split(split)
    return partition(W.PET_NAMES, "personal-pet", **NAME_SPLIT_FRACS)[split]


# ----------------------------------------------------------------------------- sampling


def _a(word: str) -> str:
    """``word`` with an indefinite article."""
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


def _other(rng: random.Random, pool: Sequence, *exclude: object):
    """A random element of ``pool`` that is not in ``exclude``."""
    while True:
        v = rng.choice(pool)
        if v not in exclude:
            return v


def sample_profile(rng: random.Random, split: str, fields: Sequence[str], updates: Sequence[str]) -> Profile:
    """Draw a profile holding ``fields`` (``name`` implied) whose ``updates`` have an old value."""
    names = names_for_split(split)
    user = rng.choice(names)
    first, poss = user
    partner, partner_poss = _other(rng, names, user)
    sibling, sibling_poss = _other(rng, names, user, (partner, partner_poss))
    city = rng.choice(W.CITIES)
    job = rng.choice(W.JOBS)
    all_values = {
        "city": city,
        "hometown": _other(rng, W.CITIES, city),
        "job": job,
        "employer": rng.choice(W.EMPLOYERS),
        "pet_name": rng.choice(pet_names_for_split(split)),
        "pet_species": rng.choice(W.PET_SPECIES),
        "food": rng.choice(W.FOODS),
        "colour": rng.choice(W.COLOURS),
        "sport": rng.choice(W.SPORTS),
        "birthday": rng.choice(W.birthday_choices()),
        "partner": partner,
        "sibling": sibling,
        "apartment": str(rng.randint(100, 999)),
        "allergy": rng.choice(W.ALLERGIES),
        "car": rng.choice(W.CARS),
    }
    pools = {
        "city": W.CITIES,
        "job": W.JOBS,
        "employer": W.EMPLOYERS,
        "food": W.FOODS,
        "sport": W.SPORTS,
        "car": W.CARS,
    }
    old = {}
    for f in updates:
        if f == "apartment":
            old[f] = _other(rng, [str(x) for x in range(100, 1000)], all_values[f])
        else:
            old[f] = _other(rng, pools[f], all_values[f], all_values["hometown"])
    values = {f: all_values[f] for f in fields if f != "name"}
    if "pet_name" in values:  # the pet-name question names the species
        values["pet_species"] = all_values["pet_species"]
    return Profile(
        first=first,
        last=rng.choice(W.LAST_NAMES),
        poss=poss,
        values=values,
        partner_rel=rng.choice(PARTNER_RELATIONS[partner_poss]),
        sibling_rel=rng.choice(SIBLING_RELATIONS[sibling_poss]),
        old=old,
    )


# ----------------------------------------------------------------------------- prose rendering

# Third-person sentences. Placeholders: {first} {Poss} {poss} {v} (value) {a_v} (value with
# article) {old} {a_old} {rel} {species} {a_species}.
_PROSE: dict[str, tuple[str, ...]] = {
    "city": ("{first} lives in {v}.", "{first} is based in {v}.", "Home for {first} is {v}."),
    "hometown": ("{first} grew up in {v}.", "{first} was raised in {v}."),
    "job": ("{first} works as {a_v}.", "By profession, {first} is {a_v}."),
    "employer": ("{first} works for {v}.", "{Poss} employer is {v}."),
    "pet_name": ("{first} has {a_species} named {v}.", "{first} shares a home with {a_species} called {v}."),
    "pet_species": ("{first} has {a_v}.",),
    "food": ("{Poss} favourite food is {v}.", "{first} loves {v} more than any other food."),
    "colour": ("{Poss} favourite colour is {v}.",),
    "sport": ("{Poss} favourite sport is {v}.",),
    "birthday": ("{Poss} birthday is on {v}.", "{first} was born on {v}."),
    "partner": ("{first}'s {rel} is called {v}.", "{first} lives with {poss} {rel}, {v}."),
    "sibling": ("{first} has {a_rel} named {v}.", "{Poss} {rel}'s name is {v}."),
    "apartment": ("{first} lives in apartment {v}.", "{Poss} apartment number is {v}."),
    "allergy": ("{first} is allergic to {v}.",),
    "car": ("{first} drives {a_v}.",),
}
_PROSE_UPDATE: dict[str, tuple[str, ...]] = {
    "city": (
        "{first} moved from {old} to {v} last month.",
        "{first} used to live in {old} but recently moved to {v}.",
    ),
    "job": (
        "{first} used to work as {a_old} but is now {a_v}.",
        "{first} recently changed careers from {old} to {v}.",
    ),
    "employer": (
        "{first} left {old} and now works for {v}.",
        "{first} used to work for {old}; since the spring, {poss} employer has been {v}.",
    ),
    "food": ("{Poss} favourite food used to be {old}, but these days it is {v}.",),
    "sport": ("{Poss} favourite sport used to be {old}; now it is {v}.",),
    "apartment": ("{first} recently changed flats: {poss} apartment number went from {old} to {v}.",),
    "car": ("{first} sold {poss} {old} and now drives {a_v}.",),
}


def _fill(template: str, p: Profile, f: str) -> str:
    v = p.answer(f)
    rel = p.partner_rel if f == "partner" else p.sibling_rel
    species = p.values.get("pet_species", "pet")
    old = p.old.get(f, "")
    return template.format(
        first=p.first,
        Poss=p.poss.capitalize(),
        poss=p.poss,
        v=v,
        a_v=_a(v) if v else v,
        old=old,
        a_old=_a(old) if old else old,
        rel=rel,
        a_rel=_a(rel),
        species=species,
        a_species=_a(species),
    )


def render_profile(p: Profile, rng: random.Random) -> str:
    """Prose profile document; updated facts are stated as changes ("moved from X to Y")."""
    fields = [f for f in p.values if not (f == "pet_species" and "pet_name" in p.values)]
    rng.shuffle(fields)
    sentences = [f"The user's name is {p.full_name}."]
    for f in fields:
        table = _PROSE_UPDATE if f in p.old else _PROSE
        sentences.append(_fill(rng.choice(table[f]), p, f))
    # Two or three short paragraphs read more like a real note.
    cut = sorted(rng.sample(range(2, len(sentences)), k=min(2, max(0, len(sentences) - 2))))
    paras, start = [], 0
    for c in cut + [len(sentences)]:
        paras.append(" ".join(sentences[start:c]))
        start = c
    return "\n\n".join(p_ for p_ in paras if p_)


# ----------------------------------------------------------------------------- chat rendering

_CHAT: dict[str, tuple[str, ...]] = {
    "city": ("I live in {v}.", "I'm based in {v} these days.", "Home for me is {v}."),
    "hometown": ("I grew up in {v}, originally.", "I was raised in {v}."),
    "job": ("I work as {a_v}.", "I'm {a_v} by trade."),
    "employer": ("I work for {v}.", "My employer is {v}."),
    "pet_name": ("I have {a_species} called {v}.", "My {species}'s name is {v}."),
    "pet_species": ("I have {a_v} at home.",),
    "food": ("My favourite food is {v}.", "I could eat {v} every day, it's my favourite food."),
    "colour": ("My favourite colour is {v}.",),
    "sport": ("My favourite sport is {v}.",),
    "birthday": ("My birthday is on {v}.", "I was born on {v}."),
    "partner": ("My {rel} is called {v}.", "I live with my {rel}, {v}."),
    "sibling": ("I have {a_rel} named {v}.", "My {rel}'s name is {v}."),
    "apartment": ("My apartment number is {v}.", "I live in apartment {v}."),
    "allergy": ("I'm allergic to {v}, so keep that in mind.", "Just so you know, I'm allergic to {v}."),
    "car": ("I drive {a_v}.", "My car is {a_v}."),
}
_CHAT_UPDATE: dict[str, tuple[str, ...]] = {
    "city": (
        "Actually, I moved from {old} to {v} last month.",
        "Quick update: I don't live in {old} anymore, I moved to {v}.",
    ),
    "job": (
        "Oh, and I changed jobs: I'm not {a_old} anymore, I'm {a_v} now.",
        "Update on work: I switched careers from {old} to {v}.",
    ),
    "employer": (
        "I left {old} last week and started at {v}.",
        "Small correction: I no longer work for {old}, I work for {v} now.",
    ),
    "food": ("Honestly my favourite food is {v} now, not {old} anymore.",),
    "sport": ("I've switched sports: my favourite is {v} now, I quit {old}.",),
    "apartment": ("We moved flats, by the way: my apartment number is {v} now, not {old}.",),
    "car": ("I sold my {old} and bought {a_v}.",),
}
_ACKS = (
    "Got it.",
    "Noted!",
    "Thanks for letting me know.",
    "Good to know.",
    "I'll remember that.",
    "Sounds great!",
    "Understood.",
    "Okay, noted.",
)
_UPDATE_ACKS = (
    "Thanks for the update, noted.",
    "Got it, I've updated that.",
    "Okay, I'll remember the change.",
)
_OPENERS = ("", "", "Also, ", "Oh, and ", "By the way, ", "Another thing: ")
_SMALL_TALK = (
    ("Can you suggest a quick stretch for my back?", "Try a slow cat-cow stretch for a minute or two."),
    ("Any tips for falling asleep faster?", "Keep a regular bedtime and avoid screens before bed."),
    ("What's a good way to remember a shopping list?", "Group the items by aisle, then picture them."),
    ("Remind me what a haiku is?", "A short poem of three lines with five, seven and five syllables."),
    ("I need a name for a houseplant.", "How about Fernando?"),
    ("How long should I boil an egg?", "About seven minutes for a jammy yolk."),
    ("Is it better to run in the morning or evening?", "Whichever you can keep doing regularly."),
    ("Tell me a fun fact.", "Octopuses have three hearts."),
)


def _decap(s: str) -> str:
    return s if s.startswith(("I ", "I'")) else s[0].lower() + s[1:]


def render_transcript(p: Profile, rng: random.Random) -> list[dict[str, str]]:
    """Chat messages in which the user states the profile; updates come in later user turns."""
    fields = [f for f in p.values if not (f == "pet_species" and "pet_name" in p.values)]
    rng.shuffle(fields)
    # The first mention of an updated field states its OLD value.
    before = Profile(p.first, p.last, p.poss, {**p.values, **p.old}, p.partner_rel, p.sibling_rel)
    # Group the facts into user turns of 1-3 statements.
    turns: list[list[str]] = []
    i = 0
    while i < len(fields):
        k = rng.choice((1, 1, 2, 2, 3))
        turns.append(fields[i : i + k])
        i += k
    greeting = rng.choice((f"Hi! I'm {p.full_name}.", f"Hey, my name is {p.full_name}."))
    reply = rng.choice((f"Nice to meet you, {p.first}!", f"Hi {p.first}, nice to meet you."))
    # (user text, assistant reply, fields stated in this turn)
    user_turns: list[tuple[str, str, tuple[str, ...]]] = [(greeting, reply, ("name",))]
    for group in turns:
        text = " ".join(_fill(rng.choice(_CHAT[f]), before, f) for f in group)
        opener = rng.choice(_OPENERS)
        user_turns.append(((opener + _decap(text)) if opener else text, rng.choice(_ACKS), tuple(group)))
    # Updates: a separate turn somewhere after the turn that stated the old value.
    for f in [f for f in fields if f in p.old]:
        stated = next(j for j, t in enumerate(user_turns) if f in t[2])
        pos = rng.randint(stated + 1, len(user_turns))
        user_turns.insert(pos, (_fill(rng.choice(_CHAT_UPDATE[f]), p, f), rng.choice(_UPDATE_ACKS), ()))
    # A little small talk between the facts.
    for q, a in rng.sample(_SMALL_TALK, k=rng.randint(0, 2)):
        user_turns.insert(rng.randint(1, len(user_turns)), (q, a, ()))
    messages = []
    for u, a, _ in user_turns:
        messages.append({"role": "user", "content": u})
        messages.append({"role": "assistant", "content": a})
    return messages


def transcript_text(messages: Sequence[dict[str, str]]) -> str:
    """Render chat messages as ``"User: ...\\nAssistant: ..."`` lines."""
    return "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


# ----------------------------------------------------------------------------- builder


def _build_one(rng: random.Random, split: str, style: str) -> tuple[str, Profile, dict]:
    if style == "profile":
        n_fields, n_updates = rng.randint(8, 14), rng.choice((0, 1, 1, 2))
    else:
        n_fields, n_updates = rng.randint(9, 14), rng.choice((1, 1, 2, 2, 3))
    others = [f for f in FIELDS if f not in ("name", "pet_species")]
    updates = rng.sample(UPDATABLE, k=n_updates)
    rest = [f for f in others if f not in updates]
    fields = ["name", *updates, *rng.sample(rest, k=n_fields - n_updates)]
    p = sample_profile(rng, split, fields, updates)
    meta: dict = {"style": style}
    if style == "profile":
        context = render_profile(p, rng)
    else:
        messages = render_transcript(p, rng)
        context = transcript_text(messages)
        meta["messages"] = messages
    return context, p, meta


def build_personal(
    n: int,
    seed: int = 0,
    split: str = "train",
    style: str = "mixed",
    question_person: str = "third",
    qas_per_sample: tuple[int, int] = (4, 6),
) -> list[Sample]:
    """Build ``n`` personal-memory samples.

    Args:
        n: number of samples.
        seed: RNG seed; the same (seed, split, style) gives identical samples.
        split: ``"train"``, ``"val"`` or ``"test"``; decides the pools of person and pet names.
        style: ``"profile"`` (prose document), ``"transcript"`` (chat) or ``"mixed"`` (alternating).
        question_person: ``"third"`` ("What city does the user live in?"), ``"first"``
            ("What city do I live in?", as the user would ask the assistant), ``"named"`` ("What city
            does Ada live in?", as an app holding many people's facts asks) or ``"mixed"`` (each
            question one of the three, drawn from its own stream: the contexts and answers are those
            of ``"third"``).
        qas_per_sample: inclusive range of questions per sample; questions about updated facts
            are always included.

    Returns:
        Samples of kind ``"personal"``; ``meta`` holds ``style``, ``person`` (user, partner,
        sibling and pet names), ``facts`` (newest values), ``updates`` ({field: {"old", "new"}}),
        ``qa_fields`` (field of each QA), ``n_tokens_approx`` and, for transcripts, ``messages``.
    """
    check_split(split)
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    if question_person not in QUESTION_PERSONS:
        raise ValueError(f"question_person must be one of {QUESTION_PERSONS}, got {question_person!r}")
    rng = make_rng("personal", seed, split, style)
    samples = []
    for i in range(n):
        s_style = style if style != "mixed" else ("profile", "transcript")[i % 2]
        lo, hi = TOKEN_BOUNDS[s_style]
        for _attempt in range(20):  # redraw until the length is in range (rarely needed)
            context, p, meta = _build_one(rng, split, s_style)
            n_tok = approx_tokens(context)
            if lo <= n_tok <= hi:
                break
        qa_fields = list(p.old)
        pool = [f for f in FIELDS if f not in qa_fields and (f == "name" or f in p.values)]
        k = min(len(pool), max(0, rng.randint(*qas_per_sample) - len(qa_fields)))
        qa_fields += rng.sample(pool, k=k)
        rng.shuffle(qa_fields)
        persons = [question_person] * len(qa_fields)
        if question_person == "mixed":  # a separate stream: the samples are those of "third" otherwise
            prng = random.Random(f"personal-phrasing-{seed}-{split}-{style}-{i}")
            persons = [prng.choice(QUESTION_PERSONS[:3]) for _ in qa_fields]
        qas = tuple(QA(p.question(f, who), p.answer(f)) for f, who in zip(qa_fields, persons, strict=True))
        meta.update(
            person={
                "first": p.first,
                "last": p.last,
                "partner": p.values.get("partner"),
                "sibling": p.values.get("sibling"),
                "pet": p.values.get("pet_name"),
            },
            facts={"name": p.full_name, **p.values},
            updates={f: {"old": o, "new": p.answer(f)} for f, o in p.old.items()},
            qa_fields=qa_fields,
            n_tokens_approx=n_tok,
        )
        samples.append(
            Sample(
                context=context, qas=qas, kind="personal", id=f"personal-{split}-s{seed}-{i:06d}", meta=meta
            )
        )
    logger.info("built %d personal samples (split=%s, style=%s)", len(samples), split, style)
    return samples
