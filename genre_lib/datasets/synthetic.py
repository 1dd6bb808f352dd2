"""Seeded synthetic data in the raw layout: `<path>/interactions/ds=YYYY-MM-DD/events.<fmt>` (one
folder per arrival day) and `<path>/items.jsonl`.

Realistic on purpose: users have latent genre tastes that drift over the period, item popularity
follows a power law, titles and descriptions use words that carry the genre, items can have several
genres (and a few have none, to be predicted), and a share of rows is dirty in the ways the clean
job must catch. Vectorised numpy, written day by day, so it scales to tens of millions of rows.

Calibrated for realism, not for any model to win:
- item popularity: lognormal appeal (sigma 1.6) within each genre; on the default profile the top
  1/5/10/20/50% of items get ~7/25/40/60/90% of events, close to ML-100k's 8/26/43/65/93%;
- user activity: lognormal (sigma 1), as ML-100k's per-user counts (mean/median 106/65);
- a fresh event goes to an item the user has not touched (redrawn within the genre); separately a
  quarter of events return to an item touched a few events earlier (view -> click -> rate funnels);
- texts: per genre 38-49 nouns and 15 adjectives of real English with Zipf frequencies, mixed with
  neutral words in sentence frames, so a genre's texts vary and a test item shares only some
  words with training items of its genre (related genres share some words);
- time: one clock per event (day and second drawn together and sorted): row order is time order.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from genre_lib.config.data import SyntheticConfig

# Per genre: content nouns, then "|", then adjectives; most typical first (usage is Zipf over this order).
GENRE_WORDS = {
    "Action": "mission agent fight chase explosion heist gun escape battle commando mercenary soldier "
              "bodyguard assassin showdown ambush rescue convoy hijacking bomb squad sniper warlord vigilante "
              "stuntman raid firefight helicopter rooftop motorcycle bullet hostage pursuit martial arts kickboxer "
              "brawler ninja grenade detonator tank militia arsenal enforcer fugitive marine weapons revenge "
              "shootout | explosive relentless deadly armed tactical fearless unstoppable ruthless elite high-octane "
              "adrenaline-fueled bulletproof rogue heavily-armed lethal",
    "Comedy": "laugh prank joke mishap wedding roommate party slacker sitcom blunder goofball misfit road-trip "
              "bachelor buddy hijinks fiasco roast parody spoof satire clown stand-up comedian impostor neighbor "
              "in-laws reunion hangover shenanigans nerd klutz underdog bet con-artist makeover mix-up mascot "
              "dorm frat pranks sidekick chaos antics nanny slapstick caper | funny hilarious awkward quirky "
              "zany wacky goofy absurd madcap clumsy silly outrageous raunchy cheeky lovable",
    "Drama": "family loss grief struggle redemption secret trial memory mother father daughter son marriage "
             "divorce illness addiction forgiveness sacrifice poverty immigrant widow orphan hospital funeral "
             "inheritance betrayal guilt reconciliation childhood estrangement siblings dignity hardship "
             "courtroom teacher coal-mine factory farm dementia recovery regret healing legacy conscience | "
             "poignant heartbreaking intimate tender moving bittersweet devastating quiet raw emotional "
             "grieving troubled estranged fragile haunting",
    "Horror": "ghost blood curse demon terror nightmare cabin scream zombie vampire werewolf exorcism "
              "poltergeist ritual cult corpse graveyard asylum killer slasher creature monster witch possession "
              "seance skull coffin crypt basement attic mask chainsaw butcher entity specter phantom "
              "infestation carnage massacre shriek dread sacrifice undead | haunted possessed terrifying gruesome "
              "bloody creepy sinister cursed eerie demonic macabre unholy blood-curdling ghastly shadowy",
    "Romance": "love kiss heart romance affair passion letters wedding sweetheart lover soulmate courtship "
               "proposal honeymoon fiance bride groom valentine crush flirtation date longing desire chemistry "
               "engagement first-love heartbreak rendezvous serenade bouquet roses candlelight ballroom dance "
               "paramour infatuation admirer elopement vow embrace yearning devotion | romantic tender passionate "
               "lovestruck charming swoon-worthy star-crossed forbidden heartfelt smitten sensual dreamy "
               "enchanting sweet flirtatious",
    "Sci-Fi": "space alien robot galaxy future planet android starship quantum cyborg spacecraft astronaut "
              "colony asteroid wormhole teleporter laser clone mutant hologram simulation artificial-intelligence "
              "time-machine dimension orbit cosmos nebula spaceship satellite invasion experiment scientist "
              "laboratory virus dystopia mothership droid exoskeleton terraforming cryosleep warp-drive "
              "extraterrestrial | futuristic interstellar intergalactic cybernetic robotic dystopian "
              "post-apocalyptic extraterrestrial genetic synthetic orbital galactic hyperspace mechanical lunar",
    "Thriller": "conspiracy suspect detective hostage spy twist witness alibi killer stalker kidnapping "
                "blackmail informant surveillance cover-up whistleblower fugitive ransom sniper paranoia "
                "double-agent cipher dossier interrogation mole abduction disappearance obsession manhunt "
                "target evidence psychopath captor accomplice escape deadline bomb motive deception | tense "
                "gripping suspenseful paranoid nail-biting chilling menacing twisted unrelenting shadowy "
                "claustrophobic taut sinister cat-and-mouse covert",
    "Documentary": "footage interviews history nature investigation archive biography expedition wildlife "
                   "journalist filmmaker portrait chronicle testimony eyewitness survivors activism climate "
                   "ecosystem science culture tradition musicians athletes scandal election industry exposé "
                   "revolution census memoir ocean rainforest migration species pioneers veterans heritage "
                   "research facts | true real-life candid behind-the-scenes unscripted investigative "
                   "first-hand historical archival observational eye-opening revealing rare untold factual",
    "Animation": "cartoon animals toys princess kingdom adventure magic puppy kitten dragon talking-car "
                 "bunny mouse fairy mermaid snowman penguin robot dinosaur monster pirate unicorn sidekick "
                 "forest friendship village lullaby candy rainbow balloon storybook critters duckling "
                 "jungle songs playground toybox teddy | animated colorful cute cuddly playful musical "
                 "whimsical family-friendly magical hand-drawn charming bright kid-friendly adorable cheerful",
    "Fantasy": "dragon wizard sword quest elf kingdom sorcery prophecy realm sorcerer knight throne "
               "spell enchantress goblin dwarf troll orc amulet relic oracle sorceress dungeon castle "
               "potion witchcraft rune griffin centaur faerie tower crown legend myth heir chosen-one "
               "underworld portal scroll staff | enchanted mythical magical legendary ancient mystical "
               "arcane fabled cursed otherworldly medieval sorcerous epic immortal elven",
    "Western": "cowboy sheriff outlaw saloon frontier ranch desert gunslinger horse bounty stagecoach "
               "marshal posse rustler prairie homestead cattle wagon canyon revolver rifle deputy gold-rush "
               "settler railroad mesa tumbleweed spurs lasso duel bandit hideout corral brothel trail "
               "drifter ranchers bounty-hunter badlands sagebrush | dusty rugged lawless wild sun-baked "
               "hardened frontier grizzled weathered untamed trigger-happy lonesome sprawling gritty sunburnt",
    "Crime": "mob gangster heist police robbery cartel detective murder underworld mafia syndicate "
             "racketeering smuggler dealer informant hitman kingpin precinct homicide bank-job getaway "
             "counterfeit extortion money-laundering crime-family godfather mobster bootlegger felon "
             "parole prison inmate jailbreak narcotics trafficking undercover cop inspector forensics "
             "heist-crew loot | corrupt criminal crooked ruthless violent organized gritty hardboiled "
             "underground illicit notorious brutal shady street-smart noir",
}
NEUTRAL_NOUNS = ("man woman girl boy friend stranger family town city village house home road river island "
                 "night day year summer winter morning world life story journey past future secret truth "
                 "dream promise choice chance mistake job school team brother sister father mother neighbor "
                 "office letter photograph car train bridge hotel street farm sea mountain door window "
                 "country people name voice time moment plan way memory weekend holiday").split()
NEUTRAL_ADJ = ("young old new last first small lonely unexpected ordinary strange distant quiet "
               "little great long hidden lost final forgotten unlikely nearby local simple").split()
EVENTS = np.array(["view", "click", "rate", "purchase"])
EVENT_P = np.array([0.55, 0.25, 0.15, 0.05])


def _zipf(words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Words and the cumulative Zipf (1/rank) probabilities of using them."""
    w = 1.0 / np.arange(1, len(words) + 1)
    return np.asarray(words, dtype=object), np.cumsum(w / w.sum())


# per genre (nouns, adjectives) and the neutral pair, each (words, cumulative Zipf probabilities)
_LEX = {g: tuple(_zipf(part.split()) for part in text.split("|")) for g, text in GENRE_WORDS.items()}
_NEUTRAL = (_zipf(NEUTRAL_NOUNS), _zipf(NEUTRAL_ADJ))
_VERBS = "meets finds follows discovers faces loses confronts uncovers joins leaves chases protects hunts hides".split()
_BASE = "face find stop save escape uncover protect survive confront win outwit expose".split()
# frames: {N} noun, {A} adjective (genre word with probability `signal`, else neutral), {V}/{B} verb
_TITLES = ["{A} {N}", "The {N}", "The {A} {N}", "{N} of the {N}", "{N} and {N}", "{A} {N}s", "The {N} of {N}"]
_SENTENCES = ["A {A} {N} {V} a {A} {N}.", "When the {N} {V} the {N}, a {A} {N} must {B} the {N}.",
              "The {A} {N} and the {N} {V} a {N} in the {N}.", "The story of a {A} {N} who {V} the {A} {N}.",
              "In a {A} {N}, a {N} must {B} a {N} before the {N} {V} the {N}.",
              "A {N} {V} the {A} {N} and must {B} the {N}."]
_SLOT = re.compile(r"\{([NAVB])\}")
_AN = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])")


def _pick(rng: np.random.Generator, genres: list[str], kind: int, signal: float) -> str:
    """One content word: from one of `genres` (chosen uniformly) with probability `signal`, else
    neutral; kind 0 = noun, 1 = adjective; Zipf usage within the list."""
    lex = _LEX[genres[int(rng.integers(len(genres)))]] if genres and rng.random() < signal else _NEUTRAL
    words, cum = lex[kind]
    return words[min(int(np.searchsorted(cum, rng.random())), len(words) - 1)]


def _fill(rng: np.random.Generator, frame: str, genres: list[str], signal: float) -> str:
    def slot(m: re.Match) -> str:
        k = m.group(1)
        if k in "NA":
            return _pick(rng, genres, "NA".index(k), signal)
        verbs = _VERBS if k == "V" else _BASE
        return verbs[int(rng.integers(len(verbs)))]
    return _AN.sub(r"\1n ", _SLOT.sub(slot, frame))  # "a army" -> "an army"


def make_items(cfg: SyntheticConfig, rng: np.random.Generator) -> pd.DataFrame:
    names = list(GENRE_WORDS)
    rows = []
    for i in range(cfg.items):
        k = rng.choice([1, 1, 1, 2, 2, 3])
        genres = list(rng.choice(names, size=k, replace=False))
        title = _fill(rng, _TITLES[int(rng.integers(len(_TITLES)))], genres, 0.6).title()
        desc = (" ".join(_fill(rng, _SENTENCES[int(rng.integers(len(_SENTENCES)))], genres, 0.45)
                         for _ in range(int(rng.integers(1, 4)))) if rng.random() > 0.05 else None)
        desc = desc[0].upper() + desc[1:] if desc else desc
        tags = ",".join(_pick(rng, genres[:1], 0, 1.0) for _ in range(2)) if rng.random() < 0.3 else None
        unlabelled = rng.random() < 0.05  # genres unknown: the classifier predicts them
        rows.append({"item_id": f"i{i:06d}", "title": title, "description": desc,
                     "genres": [] if unlabelled else sorted(genres), "tags": tags, "_true": genres})
    return pd.DataFrame(rows)


def make_interactions(cfg: SyntheticConfig, items: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    names = list(GENRE_WORDS)
    G, U, N = len(names), cfg.users, cfg.interactions
    start = cfg.end_date - dt.timedelta(days=cfg.days - 1)
    # taste at time t moves linearly from taste0 to taste1 by `drift`
    taste0 = rng.dirichlet(np.full(G, 0.3), size=U)
    taste1 = rng.dirichlet(np.full(G, 0.3), size=U)
    activity = rng.lognormal(0.0, 1.0, size=U)  # ML-100k-like per-user counts (see the docstring)
    users = rng.choice(U, size=N, p=activity / activity.sum())
    t = np.sort(rng.integers(0, cfg.days * 86_400, size=N))  # seconds since start: row order = time order
    day = t // 86_400
    frac = (day / max(cfg.days - 1, 1) * cfg.drift)[:, None]
    taste = (1 - frac) * taste0[users] + frac * taste1[users]
    cum = taste.cumsum(axis=1)
    genre = (rng.random(N)[:, None] > cum).sum(axis=1).clip(0, G - 1)
    # heavy-tailed (lognormal) appeal within each genre (by true genres, so unlabelled items get
    # traffic too), calibrated to ML-100k's popularity curve (see the docstring)
    appeal = rng.lognormal(0.0, 1.6, size=len(items))
    members = [np.flatnonzero(items["_true"].map(lambda gs, n=name: n in gs).to_numpy()) for name in names]
    members = [m if len(m) else np.arange(len(items)) for m in members]  # a tiny catalogue may lack a genre
    item_idx = np.empty(N, dtype=np.int64)

    def draw(rows: np.ndarray) -> None:
        g_of = genre[rows]
        for g, m in enumerate(members):
            sel = rows[g_of == g]
            if len(sel):
                item_idx[sel] = rng.choice(m, size=len(sel), p=appeal[m] / appeal[m].sum())

    # each user's events in time order; a quarter (never a user's first) return to an item the user
    # touched a few events before, the rest go to items new to the user
    order = np.lexsort((np.arange(N), users))
    pos = np.empty(N, np.int64)  # index of each row in its user's sequence
    starts = np.r_[0, np.flatnonzero(np.diff(users[order])) + 1]
    pos[order] = np.arange(N) - np.repeat(starts, np.diff(np.r_[starts, N]))
    repeat = (rng.random(N) < 0.25) & (pos > 0)
    fresh = np.flatnonzero(~repeat)
    draw(fresh)
    for _ in range(8):  # redraw (same genre) a fresh event on an item the user already had
        key = users[fresh].astype(np.int64) * len(items) + item_idx[fresh]
        dup = np.ones(len(fresh), bool)
        dup[np.unique(key, return_index=True)[1]] = False
        if not dup.any():
            break
        draw(fresh[dup])
    back = np.minimum(rng.geometric(0.3, size=N), np.maximum(pos, 1))  # ~3 events back
    seq = np.empty(N, np.int64)
    seq[order] = np.arange(N)
    src = np.arange(N)
    src[repeat] = order[seq[repeat] - back[repeat]]
    for _ in range(int(np.ceil(np.log2(max(N, 2)))) + 1):  # follow repeats of repeats to the fresh event
        src = src[src]
    item_idx = item_idx[src]
    event = rng.choice(EVENTS, size=N, p=EVENT_P)
    rating = np.where(event == "rate", np.clip(np.round((3.6 + rng.normal(0, 1, N)) * 2) / 2, 0.5, 5.0), np.nan)
    ts = pd.Timestamp(start, tz="UTC") + pd.to_timedelta(t, unit="s")
    return pd.DataFrame({"user_id": [f"u{u:05d}" for u in users], "item_id": items["item_id"].to_numpy()[item_idx],
                         "event": event, "rating": rating, "ts": ts,
                         "ds": (pd.Timestamp(start) + pd.to_timedelta(day, unit="D")).date})


def _dirty_lines(clean: pd.DataFrame, n: int, rng: np.random.Generator, day: dt.date) -> list[str]:
    """Raw JSON lines of the kinds of bad rows the clean job must quarantine or drop."""
    out = []
    base = clean.sample(n=min(n, len(clean)), random_state=int(rng.integers(1 << 30)), replace=len(clean) < n)
    for k, (_, r) in enumerate(base.iterrows()):
        rec = {"user_id": r.user_id, "item_id": r.item_id, "event": r.event,
               "rating": None if pd.isna(r.rating) else float(r.rating), "ts": r.ts.isoformat()}
        kind = k % 10
        if kind == 0:
            out.append('{"user_id": "' + r.user_id + '", "item_id": ')  # malformed line
            continue
        if kind == 1:
            rec["user_id"] = None
        elif kind == 2:
            rec["ts"] = "not-a-date"
        elif kind == 3:
            rec["ts"] = (pd.Timestamp(day, tz="UTC") + pd.Timedelta(days=400)).isoformat()
        elif kind == 4:
            rec["event"], rec["rating"] = "rate", 11.0
        elif kind == 5:
            rec["rating"] = "five"
        elif kind == 6:
            rec["event"] = "hover"
        elif kind == 7:
            rec["item_id"] = "i999999x"
        elif kind == 8:
            out.append(json.dumps(rec))  # exact duplicate of a good row
            continue
        elif kind == 9:
            rec["ts"] = (r.ts + pd.Timedelta(seconds=5)).isoformat()  # near duplicate
        out.append(json.dumps(rec))
    return out


def generate(cfg: SyntheticConfig, path: str | Path) -> dict:
    """Write the raw layout under `path`; returns counts. Same config and seed give the same files."""
    rng = np.random.default_rng(cfg.seed)
    root = Path(path)
    items = make_items(cfg, rng)
    inter = make_interactions(cfg, items, rng)
    (root / "interactions").mkdir(parents=True, exist_ok=True)
    items.drop(columns="_true").to_json(root / "items.jsonl", orient="records", lines=True)
    rows = 0
    for day, part in inter.groupby("ds", sort=True):
        folder = root / "interactions" / f"ds={day}"
        folder.mkdir(parents=True, exist_ok=True)
        part = part.drop(columns="ds")
        n_dirty = int(round(len(part) * cfg.dirty_share))
        if cfg.file_format == "parquet":
            out = part.assign(ts=part.ts.map(lambda t: t.isoformat()), rating=part.rating.astype(object).where(part.rating.notna(), None))
            out.astype({"rating": "string"}).to_parquet(folder / "events.parquet", index=False)
            rows += len(out)
            continue
        if cfg.file_format == "csv":
            part.assign(ts=part.ts.map(lambda t: t.isoformat())).to_csv(folder / "events.csv", index=False)
            rows += len(part)
            continue
        lines = [json.dumps({"user_id": r.user_id, "item_id": r.item_id, "event": r.event,
                             "rating": None if np.isnan(r.rating) else float(r.rating), "ts": r.ts.isoformat()})
                 for r in part.itertuples(index=False)]
        lines += _dirty_lines(part, n_dirty, rng, day)
        if day == cfg.end_date and cfg.dirty_share > 0:
            # a bot: one user firing far more events in a day than a person could
            bot = {"user_id": "u_bot", "item_id": part.item_id.iloc[0], "event": "view", "rating": None}
            lines += [json.dumps({**bot, "ts": (pd.Timestamp(day, tz="UTC") + pd.Timedelta(seconds=s * 61)).isoformat()})
                      for s in range(600)]
        order = rng.permutation(len(lines))
        (folder / "events.jsonl").write_text("\n".join(lines[i] for i in order) + "\n")
        rows += len(lines)
    return {"items": len(items), "raw_rows": rows, "days": int(inter.ds.nunique())}
