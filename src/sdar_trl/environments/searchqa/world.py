"""Generated worlds of fictional entities and their wiki-style passages.

A world holds countries, cities, people, companies, universities, bands and rivers with invented
names, typed facts linking them (`schema.RELATIONS`), and a corpus of passages in Search-R1's
layout (`title` + `text`): a lead passage per entity stating its facts, a history passage with
incidental details (other places, years and people), and distractor passages whose titles share
words with an entity ("Varo Quellin Prize", "Quellin Holdings Cup", a namesake "Varo Quellin
(footballer)"). Everything is drawn from a `random.Random` seeded by a string, so a world is a pure
function of `(split, difficulty, world_id)`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .retrieval import Passage
from .schema import RELATIONS, value_kind

__all__ = ["ATTRIBUTE_WORDS", "DIFFICULTY_LEVELS", "Entity", "World", "WorldConfig", "generate_world"]


@dataclass(frozen=True)
class WorldConfig:
    """How big and how confusable a world is (one per difficulty level)."""

    counts: dict[str, int]
    history_passages: bool  # a second passage per entity with incidental facts
    shared_name_rate: float  # chance that a company/university/band/river borrows a name word from another entity
    surname_pool: float  # distinct surnames per person (lower: more people share a surname)
    distractor_rate: float  # expected distractor passages per entity
    namesake_rate: float  # chance that a person has a namesake passage "Name (occupation)"
    three_hop_share: float  # share of the multi-hop questions with three hops


DIFFICULTY_LEVELS: dict[str, WorldConfig] = {
    "easy": WorldConfig(
        counts={"country": 3, "city": 8, "person": 10, "company": 5, "university": 3, "band": 3, "river": 3},
        history_passages=False,
        shared_name_rate=0.0,
        surname_pool=1.0,
        distractor_rate=0.0,
        namesake_rate=0.0,
        three_hop_share=0.0,
    ),
    "standard": WorldConfig(
        counts={"country": 4, "city": 12, "person": 18, "company": 8, "university": 4, "band": 5, "river": 4},
        history_passages=True,
        shared_name_rate=0.5,
        surname_pool=0.7,
        distractor_rate=0.4,
        namesake_rate=0.0,
        three_hop_share=0.0,
    ),
    "hard": WorldConfig(
        counts={"country": 5, "city": 14, "person": 22, "company": 10, "university": 5, "band": 6, "river": 5},
        history_passages=True,
        shared_name_rate=0.7,
        surname_pool=0.5,
        distractor_rate=1.0,
        namesake_rate=0.4,
        three_hop_share=0.5,
    ),
}


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_ONSETS = _words("b br c ch d dr f g gr h j k kr l m n p pr r s sh st t th tr v w z b d f g k l m n p r s t v")
_VOWELS = _words("a e i o u a e i o ai ei ou ia")
_CODAS = ("", "", "", "", "", "", "n", "r", "l", "s", "m", "k", "th", "nd", "st")
_COUNTRY_SUFFIXES = _words("ia ora and esh avia ica una eth")
_CITY_SUFFIXES = (*_words("mark ford holm burg ton vik grad port haven by stad"), "", "", "")
_COMPANY_SUFFIXES = _words("Holdings Group Works Industries Company Corporation Enterprises Partners")
_UNIVERSITY_SUFFIXES = _words("University Institute College")
_BAND_NOUNS = _words("Owls Lanterns Tides Foxes Engines Ghosts Comets Saints Ravens Kites")
_PROFESSIONS = _words(
    "sculptor painter architect engineer composer novelist chemist botanist cartographer physician poet "
    "astronomer photographer economist mathematician historian lawyer inventor"
)
_INDUSTRIES = _words(
    "shipbuilding textile brewing mining publishing pharmaceutical aviation chemical glassmaking railway"
)
_GENRES = _words("folk rock jazz punk blues electronic soul metal")
#: The closed set of single-word attribute values every world draws from (a person's profession, a company's
#: industry, a band's genre): an answer among them that the agent was not shown is a guess, not a copy.
ATTRIBUTE_WORDS: frozenset[str] = frozenset((*_PROFESSIONS, *_INDUSTRIES, *_GENRES))
_RESERVED = frozenset(
    _words(
        "the and for which who what with from into over under river city band prize cup bridge flood or "
        "was born founded located capital"
    )
)


@dataclass
class Entity:
    """One entity: `name`, `kind`, and its facts `relation -> value` (values as written in passages)."""

    name: str
    kind: str
    facts: dict[str, str] = field(default_factory=dict)
    pronoun: str = "it"  # people: "he" / "she"


@dataclass
class World:
    """A generated world: entities by name and the passage corpus."""

    key: str
    config: WorldConfig
    entities: dict[str, Entity]
    passages: list[Passage]

    def by_kind(self, kind: str) -> list[Entity]:
        return [e for e in self.entities.values() if e.kind == kind]


class _Names:
    """Invented names, unique within a world."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()
        self.used_words: set[str] = set()

    def root(self, syllables: tuple[int, int] = (2, 2)) -> str:
        rng = self.rng
        for _ in range(1000):
            n = rng.randint(*syllables)
            word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(n))
            word = word.capitalize()
            if 4 <= len(word) <= 10 and word.lower() not in _RESERVED and word not in self.used_words:
                self.used_words.add(word)
                return word
        raise RuntimeError("could not draw a fresh name root")  # pragma: no cover - 1000 draws never all collide

    def claim(self, name: str) -> bool:
        if name in self.used:
            return False
        self.used.add(name)
        return True


def _format_population(value: int) -> str:
    return f"{value:,}"


def generate_world(split: str, difficulty: str, world_id: int) -> World:
    """The world `world_id` of `split` at `difficulty` (deterministic)."""
    config = DIFFICULTY_LEVELS[difficulty]
    key = f"searchqa-mini/{split}/{difficulty}/{world_id}"
    rng = random.Random(key)
    names = _Names(rng)
    entities: dict[str, Entity] = {}

    def add(entity: Entity) -> Entity:
        entities[entity.name] = entity
        return entity

    def fresh(make: object) -> str:
        for _ in range(100):
            name = make()  # type: ignore[operator]
            if names.claim(name):
                return name
        raise RuntimeError(f"could not draw a fresh name in world {key}")  # pragma: no cover

    counts = config.counts
    # Countries and cities.
    countries = [
        add(Entity(fresh(lambda: names.root((2, 2)) + rng.choice(_COUNTRY_SUFFIXES)), "country"))
        for _ in range(counts["country"])
    ]
    cities = [
        add(Entity(fresh(lambda: names.root((1, 2)) + rng.choice(_CITY_SUFFIXES)), "city"))
        for _ in range(counts["city"])
    ]
    populations = rng.sample(range(4_000, 2_400_000, 100), len(cities))
    city_years = rng.sample(range(820, 1750), len(cities))
    for i, city in enumerate(cities):
        country = countries[i % len(countries)] if i < len(countries) else rng.choice(countries)
        city.facts["located_in"] = country.name
        city.facts["population"] = _format_population(populations[i])
        city.facts["founded_year"] = str(city_years[i])
    independence = rng.sample(range(1650, 1995), len(countries))
    for i, country in enumerate(countries):
        own = [c for c in cities if c.facts["located_in"] == country.name]
        country.facts["capital"] = rng.choice(own).name
        country.facts["independence_year"] = str(independence[i])

    # People, with shared surnames at higher difficulty.
    n_people = counts["person"]
    surnames = [names.root((2, 3)) for _ in range(max(1, round(n_people * config.surname_pool)))]
    birth_years = rng.sample(range(1760, 1936), n_people)
    people: list[Entity] = []
    for i in range(n_people):
        surname = surnames[i] if i < len(surnames) else rng.choice(surnames)
        name = fresh(lambda surname=surname: f"{names.root((1, 2))} {surname}")
        person = add(Entity(name, "person", pronoun=rng.choice(("he", "she"))))
        person.facts["born_in"] = rng.choice(cities).name
        person.facts["birth_year"] = str(birth_years[i])
        person.facts["profession"] = rng.choice(_PROFESSIONS)
        people.append(person)

    def borrowed_word() -> str:
        """A name word of an existing person, city or country (for confusable names)."""
        source = rng.choice(people + cities)
        return source.name.split()[-1]

    def name_with(suffix_choices: tuple[str, ...], *, prefix: str = "") -> str:
        word = borrowed_word() if rng.random() < config.shared_name_rate else names.root((2, 2))
        return f"{prefix}{word} {rng.choice(suffix_choices)}"

    def adult_year(person: Entity, low: int, high: int) -> int:
        born = int(person.facts["birth_year"])
        return rng.randint(born + low, born + high)

    company_years: set[int] = set()
    for _ in range(counts["company"]):
        founder = rng.choice(people)
        if rng.random() < config.shared_name_rate:
            name = fresh(lambda founder=founder: f"{founder.name.split()[-1]} {rng.choice(_COMPANY_SUFFIXES)}")
        else:
            name = fresh(lambda: name_with(_COMPANY_SUFFIXES))
        company = add(Entity(name, "company"))
        year = _distinct(rng, company_years, lambda founder=founder: adult_year(founder, 22, 55))
        company.facts.update(
            founder=founder.name,
            founded_year=str(year),
            headquarters=rng.choice(cities).name,
            industry=rng.choice(_INDUSTRIES),
        )
    university_years: set[int] = set()
    for _ in range(counts["university"]):
        founder = rng.choice(people)
        name = fresh(lambda: name_with(_UNIVERSITY_SUFFIXES))
        university = add(Entity(name, "university"))
        year = _distinct(rng, university_years, lambda founder=founder: adult_year(founder, 25, 60))
        university.facts.update(founder=founder.name, founded_year=str(year), located_in=rng.choice(cities).name)
    band_years: set[int] = set()
    for _ in range(counts["band"]):
        singer = rng.choice(people)
        name = fresh(lambda: name_with(_BAND_NOUNS, prefix="The "))
        band = add(Entity(name, "band"))
        year = _distinct(rng, band_years, lambda singer=singer: adult_year(singer, 16, 30))
        band.facts.update(lead_singer=singer.name, formed_in=rng.choice(cities).name, formed_year=str(year))
        band.facts["genre"] = rng.choice(_GENRES)
    lengths = rng.sample(range(60, 3200), counts["river"])
    for i in range(counts["river"]):
        name = fresh(lambda: f"{borrowed_word() if rng.random() < config.shared_name_rate else names.root()} River")
        river = add(Entity(name, "river"))
        river.facts.update(length=f"{lengths[i]} km", source=rng.choice(countries).name, mouth=rng.choice(cities).name)

    for entity in entities.values():  # every fact's value kind is what the schema promises
        for relation, value in entity.facts.items():
            if relation in RELATIONS and value_kind(relation, entity.kind) in ("person", "city", "country"):
                assert entities[value].kind == value_kind(relation, entity.kind), (entity.name, relation, value)

    passages = _render_passages(rng, config, entities, names)
    rng.shuffle(passages)
    passages = [Passage(id=f"{key}#{i}", title=p.title, text=p.text) for i, p in enumerate(passages)]
    return World(key=key, config=config, entities=entities, passages=passages)


def _distinct(rng: random.Random, used: set[int], draw: object) -> int:
    """A value from `draw()` not in `used` (compare questions need distinct values)."""
    for _ in range(200):
        value = draw()  # type: ignore[operator]
        if value not in used:
            used.add(value)
            return value
    value = max(used) + 1  # pragma: no cover - 200 draws from a 30-year window never all collide
    used.add(value)
    return value


# -- passages ----------------------------------------------------------------------------------------


def _lead_text(rng: random.Random, e: Entity) -> str:
    f = e.facts
    v = rng.random() < 0.5
    if e.kind == "person":
        pronoun = e.pronoun.capitalize()
        article = "an" if f["profession"][0] in "aeiou" else "a"
        if v:
            return (
                f"{e.name} was {article} {f['profession']} by profession. {pronoun} was born in {f['born_in']} in "
                f"{f['birth_year']}."
            )
        return f"{e.name} (born in {f['birth_year']} in {f['born_in']}) was {article} {f['profession']} by profession."
    if e.kind == "company":
        head = f"{e.name} is a company in the {f['industry']} industry"
        if v:
            return (
                f"{head}, headquartered in {f['headquarters']}. It was founded in {f['founded_year']} by "
                f"{f['founder']}."
            )
        return (
            f"{head}. It was founded by {f['founder']} in {f['founded_year']} and is headquartered in "
            f"{f['headquarters']}."
        )
    if e.kind == "university":
        if v:
            return (
                f"{e.name} is a university located in {f['located_in']}. It was founded in {f['founded_year']} by "
                f"{f['founder']}."
            )
        return (
            f"{e.name} is a university founded by {f['founder']} in {f['founded_year']}. It is located in "
            f"{f['located_in']}."
        )
    if e.kind == "city":
        if v:
            return (
                f"{e.name} is a city located in {f['located_in']}, with a population of {f['population']}. It was "
                f"founded in {f['founded_year']}."
            )
        return (
            f"{e.name} is a city with a population of {f['population']}. It is located in {f['located_in']} and was "
            f"founded in {f['founded_year']}."
        )
    if e.kind == "country":
        if v:
            return (
                f"{e.name} is a country whose capital is {f['capital']}. {e.name} gained independence in "
                f"{f['independence_year']}."
            )
        return (
            f"{e.name} is a country that gained independence in {f['independence_year']}. Its capital is "
            f"{f['capital']}."
        )
    if e.kind == "band":
        if v:
            return (
                f"{e.name} are a {f['genre']} band formed in {f['formed_in']} in {f['formed_year']}. The band's lead "
                f"singer is {f['lead_singer']}."
            )
        return (
            f"{e.name} are a {f['genre']} band formed in {f['formed_year']} in {f['formed_in']}. {f['lead_singer']} "
            "is the band's lead singer."
        )
    if e.kind == "river":
        if v:
            return (
                f"The {e.name} is a river that rises in {f['source']} and reaches the sea near {f['mouth']}. It has a "
                f"length of {f['length']}."
            )
        return (
            f"The {e.name} has a length of {f['length']}. It rises in {f['source']} and reaches the sea near "
            f"{f['mouth']}."
        )
    raise ValueError(f"unknown entity kind {e.kind!r}")  # pragma: no cover


def _history_text(rng: random.Random, e: Entity, world: dict[str, list[Entity]], names: _Names) -> str:
    """Incidental details: other places, years and people, but none of the entity's key facts."""

    def other(kind: str, *exclude: str) -> str:
        pool = [x.name for x in world[kind] if x.name not in exclude and x.name != e.name]
        return rng.choice(pool) if pool else names.root()

    f = e.facts
    if e.kind == "person":
        born = int(f["birth_year"])
        pronoun = e.pronoun.capitalize()
        return (
            f"In {born + rng.randint(18, 35)}, {e.name} moved to {other('city', f['born_in'])}. {pronoun} died in "
            f"{other('city', f['born_in'])} in {born + rng.randint(55, 88)}."
        )
    if e.kind == "company":
        year = min(int(f["founded_year"]) + rng.randint(5, 60), 2023)
        return (
            f"In {year}, {e.name} opened a second plant in {other('city', f['headquarters'])}. Its chief executive is "
            f"{other('person', f['founder'])}."
        )
    if e.kind == "university":
        return (
            f"{e.name} has about {rng.randint(20, 380) * 100:,} students. Among its alumni is "
            f"{other('person', f['founder'])}, who later lived in {other('city', f['located_in'])}."
        )
    if e.kind == "band":
        year = int(f["formed_year"])
        return (
            f"{e.name} released their debut album, {names.root()}, in {year + rng.randint(1, 4)}, and toured "
            f"{other('country')} in {year + rng.randint(5, 12)}."
        )
    if e.kind == "city":
        river = other("river")
        return f"{e.name} lies on the banks of the {river}. Its old town hall dates from {rng.randint(1300, 1900)}."
    if e.kind == "country":
        return f"{e.name} borders {other('country')}. Its largest port is {other('city', f['capital'])}."
    if e.kind == "river":
        return f"The {e.name} was first mapped in {rng.randint(1500, 1900)} by the explorer {other('person')}."
    raise ValueError(f"unknown entity kind {e.kind!r}")  # pragma: no cover


def _distractor(rng: random.Random, e: Entity, world: dict[str, list[Entity]]) -> Passage | None:
    """A passage whose title shares words with `e` but which is about something else."""
    city = rng.choice(world["city"]).name
    year = rng.randint(1850, 2015)
    if e.kind == "person":
        profession = rng.choice(_PROFESSIONS)
        return Passage(
            "",
            f"{e.name} Prize",
            f"The {e.name} Prize is an award for young {profession}s, founded in {year}. It is presented each year in "
            f"{city}.",
        )
    if e.kind == "company":
        return Passage(
            "",
            f"{e.name} Cup",
            f"The {e.name} Cup is a sailing race founded in {year} and held each summer near {city}.",
        )
    if e.kind == "university":
        return Passage(
            "",
            f"{e.name} Press",
            f"{e.name} Press is a publisher founded in {year}, located in {city}.",
        )
    if e.kind == "band":
        return Passage(
            "",
            f"{e.name} (album)",
            f"{e.name} is the debut album of the band {e.name}, recorded in {city} in {year}.",
        )
    if e.kind == "city":
        share = rng.choice(("tenth", "quarter", "third"))
        return Passage(
            "",
            f"{year} {e.name} flood",
            f"The {year} {e.name} flood struck {e.name} and displaced {rng.randint(2, 90) * 1000:,} people, about a "
            f"{share} of the population at the time.",
        )
    if e.kind == "country":
        return Passage(
            "",
            f"{e.name} national football team",
            f"The {e.name} national football team was founded in {year}. It plays its home matches in {city}.",
        )
    if e.kind == "river":
        return Passage(
            "",
            f"{e.name} Bridge",
            f"The {e.name} Bridge crosses the {e.name} near {city}. It has a length of {rng.randint(80, 900)} m and "
            f"was opened in {year}.",
        )
    return None  # pragma: no cover


def _namesake(rng: random.Random, e: Entity, world: dict[str, list[Entity]]) -> Passage:
    """A different person with the same name, disambiguated in the title as on Wikipedia."""
    profession = rng.choice([p for p in ("footballer", "cyclist", "actor", "singer", "politician")])
    city = rng.choice(world["city"]).name
    year = rng.randint(1850, 1990)
    return Passage(
        "",
        f"{e.name} ({profession})",
        f"{e.name} (born in {year} in {city}) is a {profession} who is not to be confused with the "
        f"{e.facts['profession']} of the same name.",
    )


def _render_passages(
    rng: random.Random, config: WorldConfig, entities: dict[str, Entity], names: _Names
) -> list[Passage]:
    by_kind: dict[str, list[Entity]] = {}
    for entity in entities.values():
        by_kind.setdefault(entity.kind, []).append(entity)
    passages: list[Passage] = []
    for entity in entities.values():
        passages.append(Passage("", entity.name, _lead_text(rng, entity)))
        if config.history_passages:
            passages.append(Passage("", entity.name, _history_text(rng, entity, by_kind, names)))
        if rng.random() < config.distractor_rate:
            distractor = _distractor(rng, entity, by_kind)
            if distractor is not None:
                passages.append(distractor)
        if entity.kind == "person" and rng.random() < config.namesake_rate:
            passages.append(_namesake(rng, entity, by_kind))
    return passages
