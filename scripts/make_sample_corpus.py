"""Generates the sample corpus in `data/sample/`: synthetic encyclopedia articles about a fictional world.

Stdlib only and seeded, so the output is byte-identical on every machine and Python >= 3.11.

The corpus trains a tiny BERT for a few minutes on CPU, so it is built to be *learnable*:
- each article is about one entity (a town, river, mountain, person, animal or festival) whose facts are drawn once
  and then repeated in several phrasings across the article, so a masked name, year or trade is predictable from
  the rest of the article;
- articles cross-reference each other consistently (a town lies on a river that has its own article, a person was
  born in a town), so the world is one coherent knowledge base;
- the word inventory is modest (a few thousand words) and the grammar is templated with variation;
- topics differ by kind and by names, so a random next segment from another article is distinguishable from the
  true next one.

Usage: python scripts/make_sample_corpus.py [--output data/sample] [--seed 12345] [--num_files 4]
"""

from __future__ import annotations

import argparse
import os
import random
from dataclasses import dataclass, field

# ---------------------------------------------------------------------------------------------------------------
# Word inventories. Fictional proper names come from syllables; everything else is plain English.

NAME_ONSETS = ["b", "br", "c", "d", "dr", "f", "g", "gr", "h", "k", "l", "m", "n", "p", "r", "s", "st", "t", "tr",
               "v", "w", "z", "th", "sh", "al", "el", "or", "ar"]
NAME_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "ei", "ia"]
NAME_CODAS = ["n", "r", "l", "s", "th", "nd", "rk", "m", "v", "x", "", "", "ck", "ld", "rn"]
TOWN_SUFFIXES = ["ford", "ton", "bury", "wick", "haven", "holm", "stead", "mere", "by", "dale", "gate", "port"]
RIVER_SUFFIXES = ["", "a", "ey", "wen", "ell", "o"]
MOUNTAIN_SUFFIXES = ["horn", "peak", "fell", "crag", "top", "spire"]

REGIONS = ["Vandria", "Oskeland", "the Marrow Coast", "Telvany", "the Northern Reach", "Corvale", "Pellmoor",
           "the Amber Hills"]
SEAS = ["the Grey Sea", "the Sea of Orlen", "the Bay of Kesh", "the Western Ocean", "Lake Tamber", "Lake Ossory"]
COMPASS = ["north", "south", "east", "west", "northeast", "northwest", "southeast", "southwest"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
SEASONS = {"spring": ["March", "April", "May"], "summer": ["June", "July", "August"],
           "autumn": ["September", "October", "November"], "winter": ["December", "January", "February"]}

INDUSTRIES = {
    # trade: (workers, product, place of work)
    "fishing": ("fishermen", "smoked fish", "the harbour"),
    "weaving": ("weavers", "blue cloth", "the weaving halls"),
    "pottery": ("potters", "glazed bowls", "the kilns"),
    "salt mining": ("miners", "rock salt", "the salt mines"),
    "shipbuilding": ("shipwrights", "fishing boats", "the shipyards"),
    "wine making": ("vintners", "red wine", "the vineyards"),
    "sheep farming": ("shepherds", "wool", "the high pastures"),
    "timber": ("woodcutters", "oak timber", "the sawmills"),
    "copper mining": ("miners", "copper", "the copper mines"),
    "glassmaking": ("glassblowers", "green glass", "the glassworks"),
    "cheese making": ("dairy farmers", "hard cheese", "the dairies"),
    "clockmaking": ("clockmakers", "pocket watches", "the workshops"),
    "paper making": ("paper makers", "fine paper", "the paper mills"),
    "beekeeping": ("beekeepers", "honey", "the hives"),
}
LANDMARKS = ["a stone bridge", "an old lighthouse", "a clock tower", "a covered market hall", "a round church",
             "a ruined castle", "a windmill", "a botanical garden", "a public library", "a town hall with a green roof",
             "a sundial in the main square", "a fountain shaped like a swan", "an observatory", "a watermill"]
CLIMATES = [("mild", "wet", "rain"), ("cold", "dry", "snow"), ("warm", "dry", "sunshine"),
            ("cool", "windy", "fog"), ("hot", "humid", "storms")]
BUILDING_MATERIALS = ["grey stone", "red brick", "white limestone", "dark timber", "yellow sandstone"]
FOODS = ["fish soup", "barley bread", "plum cake", "roast lamb", "onion pie", "honey biscuits", "mushroom stew",
         "cheese dumplings", "apple cider", "pickled herring"]

PROFESSIONS = {
    # profession: (field, kind of work, verb for making one)
    "painter": ("painting", "paintings", "painted"),
    "composer": ("music", "symphonies", "composed"),
    "poet": ("poetry", "poems", "wrote"),
    "architect": ("architecture", "buildings", "designed"),
    "astronomer": ("astronomy", "star charts", "drew"),
    "botanist": ("botany", "books on plants", "wrote"),
    "engineer": ("engineering", "bridges", "built"),
    "mapmaker": ("cartography", "maps", "drew"),
    "physician": ("medicine", "books on healing", "wrote"),
    "sculptor": ("sculpture", "statues", "carved"),
    "novelist": ("literature", "novels", "wrote"),
    "historian": ("history", "chronicles", "wrote"),
}
TITLE_ADJECTIVES = ["Silent", "Golden", "Long", "Broken", "Hidden", "Northern", "Last", "Quiet", "Red", "Winter",
                    "Distant", "Little", "Old", "Bright", "Lost", "Green"]
TITLE_NOUNS = ["Harbour", "Garden", "River", "Lantern", "Tower", "Journey", "Orchard", "Bridge", "Mountain",
               "Island", "Valley", "Bell", "Road", "Shore", "Forest", "Window"]
FIRST_NAMES = ["Anna", "Bruno", "Clara", "Dorian", "Elsa", "Felix", "Greta", "Hugo", "Ida", "Jonas", "Karla",
               "Leon", "Mira", "Nils", "Olga", "Paul", "Rosa", "Stefan", "Tilda", "Urs", "Vera", "Walter", "Yara",
               "Zeno", "Agnes", "Boris", "Cora", "Emil", "Frida", "Gustav", "Hanna", "Ivo", "Lotte", "Marek",
               "Nora", "Oskar", "Petra", "Ruben", "Sina", "Theo"]
QUALITIES = ["patient", "careful", "restless", "generous", "stubborn", "curious", "quiet", "cheerful", "strict"]

ANIMAL_CLASSES = {
    # class: (group noun, body covering, young, home, movement)
    "bird": ("birds", "feathers", "chicks", "nest", "flies"),
    "fish": ("fish", "scales", "fry", "spawning ground", "swims"),
    "frog": ("amphibians", "smooth skin", "tadpoles", "pond", "hops"),
    "beetle": ("insects", "a hard shell", "larvae", "burrow", "crawls"),
    "deer": ("mammals", "fur", "fawns", "thicket", "runs"),
    "bat": ("mammals", "fur", "pups", "roost", "flies"),
    "lizard": ("reptiles", "scales", "hatchlings", "burrow", "runs"),
    "owl": ("birds", "feathers", "owlets", "nest", "flies"),
    "otter": ("mammals", "thick fur", "pups", "den", "swims"),
    "butterfly": ("insects", "wings", "caterpillars", "cocoon", "flies"),
}
ANIMAL_ADJECTIVES = ["spotted", "crested", "striped", "lesser", "greater", "marsh", "rock", "painted", "silver",
                     "copper", "long-tailed", "short-eared", "ringed", "mountain", "river"]
COLOURS = ["brown", "grey", "green", "red", "black", "yellow", "blue", "white", "orange", "silver"]
DIETS = ["seeds", "insects", "small fish", "berries", "leaves", "worms", "snails", "grass", "nectar", "frogs"]
HABITATS = ["the pine forests", "the reed beds", "the high meadows", "the rocky cliffs", "the wet marshes",
            "the old oak woods", "the river banks", "the sand dunes"]
PREDATORS = ["foxes", "hawks", "wild cats", "herons", "snakes", "eagles", "wolves", "pike"]
STATUSES = [("common", "is not threatened"), ("rare", "is protected by law"), ("declining", "is watched closely"),
            ("recovering", "has returned to many valleys")]

ROCKS = ["granite", "limestone", "slate", "basalt", "sandstone", "marble"]
FESTIVAL_KINDS = {
    # kind: (what people carry or do, what is celebrated)
    "lantern": ("paper lanterns", "the return of the light"),
    "harvest": ("baskets of grain", "the end of the harvest"),
    "boat": ("decorated boats", "the opening of the river"),
    "music": ("drums and fiddles", "the founding of the town"),
    "flower": ("garlands of flowers", "the first day of spring"),
    "fire": ("torches", "the longest night"),
    "bread": ("loaves of bread", "the first grain of the year"),
}


def make_name(rng: random.Random, suffixes: list[str], used: set[str], syllables: int = 2) -> str:
    while True:
        name = "".join(rng.choice(NAME_ONSETS) + rng.choice(NAME_VOWELS) for _ in range(syllables - 1))
        name += rng.choice(NAME_ONSETS) + rng.choice(NAME_VOWELS) + rng.choice(NAME_CODAS) + rng.choice(suffixes)
        name = name.capitalize()
        if name not in used and 4 <= len(name) <= 13:
            used.add(name)
            return name


# ---------------------------------------------------------------------------------------------------------------
# The world: entities and their facts, drawn once so every mention agrees.

@dataclass
class Town:
    name: str
    region: str
    river: "River | None" = None
    founded: int = 0
    founder: "Person | None" = None
    industry: str = ""
    landmark: str = ""
    climate: tuple[str, str, str] = ("", "", "")
    population: int = 0
    material: str = ""
    food: str = ""
    direction: str = ""
    neighbours: list["Town"] = field(default_factory=list)
    festival: "Festival | None" = None
    people: list["Person"] = field(default_factory=list)


@dataclass
class River:
    name: str
    region: str
    source: "Mountain | None" = None
    mouth: str = ""
    length_km: int = 0
    towns: list[Town] = field(default_factory=list)
    fish: list[str] = field(default_factory=list)
    bridges: int = 0
    flood_year: int = 0
    colour: str = ""


@dataclass
class Mountain:
    name: str
    region: str
    height_m: int = 0
    rock: str = ""
    first_climber: "Person | None" = None
    first_climb_year: int = 0
    rivers: list[River] = field(default_factory=list)
    towns: list[Town] = field(default_factory=list)
    forest: str = ""


@dataclass
class Person:
    first: str
    last: str
    profession: str
    born: int = 0
    died: int = 0
    birthplace: Town | None = None
    deathplace: Town | None = None
    teacher: "Person | None" = None
    works: list[str] = field(default_factory=list)
    quality: str = ""
    students: list["Person"] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"


@dataclass
class Animal:
    name: str
    kind: str
    colour: str
    diet: str
    habitat: str
    region: str
    predator: str
    status: tuple[str, str]
    length_cm: int
    lifespan: int
    described_by: Person | None = None
    described_year: int = 0
    eggs_or_young: int = 0


@dataclass
class Festival:
    kind: str
    town: Town
    month: str
    first_year: int
    days: int
    food: str


@dataclass
class World:
    towns: list[Town]
    rivers: list[River]
    mountains: list[Mountain]
    people: list[Person]
    animals: list[Animal]
    festivals: list[Festival]


def build_world(rng: random.Random, *, towns: int, rivers: int, mountains: int, people: int, animals: int) -> World:
    used: set[str] = set()
    mountain_list = [Mountain(make_name(rng, MOUNTAIN_SUFFIXES, used), rng.choice(REGIONS)) for _ in range(mountains)]
    river_list = [River(make_name(rng, RIVER_SUFFIXES, used), rng.choice(REGIONS)) for _ in range(rivers)]
    town_list = [Town(make_name(rng, TOWN_SUFFIXES, used), rng.choice(REGIONS)) for _ in range(towns)]
    surnames = [make_name(rng, ["", "er", "sen", "ov", "ani"], used) for _ in range(people)]
    person_list = [Person(rng.choice(FIRST_NAMES), surnames[i], rng.choice(sorted(PROFESSIONS))) for i in range(people)]

    for mountain in mountain_list:
        mountain.height_m = rng.randrange(900, 4800, 10)
        mountain.rock = rng.choice(ROCKS)
        mountain.forest = rng.choice(["pine", "beech", "fir", "birch", "larch"])
    for river in river_list:
        river.source = rng.choice(mountain_list)
        river.source.rivers.append(river)
        river.region = river.source.region
        river.mouth = rng.choice(SEAS)
        river.length_km = rng.randrange(40, 900, 5)
        river.fish = rng.sample(["trout", "salmon", "eels", "pike", "carp", "perch", "grayling", "sturgeon"], 2)
        river.bridges = rng.randint(2, 30)
        river.colour = rng.choice(["clear", "green", "brown", "dark", "grey"])
    for town in town_list:
        town.river = rng.choice(river_list)
        town.river.towns.append(town)
        town.region = town.river.region
        town.founded = rng.randint(900, 1700)
        town.industry = rng.choice(sorted(INDUSTRIES))
        town.landmark = rng.choice(LANDMARKS)
        town.climate = rng.choice(CLIMATES)
        town.population = rng.choice([800, 1500, 2000, 3500, 5000, 8000, 12000, 20000, 35000, 60000])
        town.material = rng.choice(BUILDING_MATERIALS)
        town.food = rng.choice(FOODS)
        town.direction = rng.choice(COMPASS)
        if town.river.source is not None and len(town.river.source.towns) < 4:
            town.river.source.towns.append(town)
    for town in town_list:
        same_river = [other for other in town.river.towns if other is not town]
        others = same_river or [other for other in town_list if other.region == town.region and other is not town]
        town.neighbours = rng.sample(others, min(2, len(others)))
    for person in person_list:
        person.born = rng.randint(1500, 1900)
        person.died = person.born + rng.randint(35, 90)
        person.birthplace = rng.choice(town_list)
        person.deathplace = rng.choice([person.birthplace, rng.choice(town_list)])
        person.birthplace.people.append(person)
        person.quality = rng.choice(QUALITIES)
        person.works = []
        while len(person.works) < 3:
            title = f"The {rng.choice(TITLE_ADJECTIVES)} {rng.choice(TITLE_NOUNS)}"
            if title not in person.works:
                person.works.append(title)
    for person in person_list:
        older = [p for p in person_list if p.profession == person.profession and p.born + 15 < person.born < p.died]
        person.teacher = rng.choice(older) if older else None
        if person.teacher is not None:
            person.teacher.students.append(person)
    for town in town_list:
        town.founder = rng.choice(person_list)
    for mountain in mountain_list:
        mountain.first_climber = rng.choice(person_list)
        mountain.first_climb_year = rng.randint(mountain.first_climber.born + 18, mountain.first_climber.died - 5)
    for river in river_list:
        river.flood_year = rng.randint(1600, 1950)

    festival_list = []
    for town in rng.sample(town_list, max(1, len(town_list) // 3)):
        festival = Festival(rng.choice(sorted(FESTIVAL_KINDS)), town, rng.choice(MONTHS),
                            rng.randint(town.founded + 20, 1900), rng.randint(2, 7), rng.choice(FOODS))
        town.festival = festival
        festival_list.append(festival)

    animal_list = []
    for _ in range(animals):
        kind = rng.choice(sorted(ANIMAL_CLASSES))
        describer = rng.choice(person_list)
        animal_list.append(Animal(
            name=f"{rng.choice(ANIMAL_ADJECTIVES)} {make_name(rng, [''], used).lower()} {kind}",
            kind=kind, colour=rng.choice(COLOURS), diet=rng.choice(DIETS), habitat=rng.choice(HABITATS),
            region=rng.choice(REGIONS), predator=rng.choice(PREDATORS), status=rng.choice(STATUSES),
            length_cm=rng.randint(2, 150), lifespan=rng.randint(2, 30), described_by=describer,
            described_year=rng.randint(describer.born + 20, describer.died), eggs_or_young=rng.randint(2, 12)))
    return World(town_list, river_list, mountain_list, person_list, animal_list, festival_list)


# ---------------------------------------------------------------------------------------------------------------
# Articles. Each section is a list of candidate sentences; an article keeps a random subset in order, so facts
# recur in different wordings across sections while the text stays coherent.

def pick(rng: random.Random, sentences: list[str], low: int, high: int, *, keep_first: bool = False) -> list[str]:
    """A random subset of `low`..`high` sentences in their original order (optionally always the first)."""
    start = 1 if keep_first else 0
    count = max(0, min(len(sentences) - start, rng.randint(low, high) - start))
    keep = sorted(rng.sample(range(start, len(sentences)), count))
    return sentences[:start] + [sentences[i] for i in keep]


def a(word: str) -> str:
    """The word with its indefinite article."""
    return ("an " if word[0] in "aeiou" else "a ") + word


def number(value: int) -> str:
    return f"{value:,}"


def town_article(rng: random.Random, town: Town) -> list[str]:
    workers, product, workplace = INDUSTRIES[town.industry]
    temperature, weather, common = town.climate
    river = town.river
    n = town.name
    founder = town.founder
    intro = [
        f"{n} is a town in {town.region} on the {town.direction} bank of the river {river.name}.",
        f"It has about {number(town.population)} inhabitants and is known for its {town.industry}.",
        f"The town lies in a {rng.choice(['wide', 'narrow', 'green', 'quiet'])} valley where the {river.name} "
        f"turns toward {river.mouth}.",
        f"{n} was founded in {town.founded} by {founder.name}.",
    ]
    history = [
        f"The history of {n} begins in {town.founded}, when {founder.name} built the first houses beside the "
        f"{river.name}.",
        f"{founder.last} chose the place because the {river.name} was shallow enough to cross there.",
        f"In the early years the people of {n} lived from {town.industry} and trade along the river.",
        f"By {town.founded + rng.randint(40, 120)} the town had a market and a wall of {town.material}.",
        f"A great flood of the {river.name} damaged much of {n} in {river.flood_year}.",
        f"After the flood of {river.flood_year} the town was rebuilt in {town.material}.",
        f"The old centre of {n} still shows the street plan laid out by {founder.last}.",
        f"During the following centuries {n} grew slowly and remained a town of {workers}.",
    ]
    economy = [
        f"The economy of {n} depends on {town.industry}.",
        f"Many families in {n} have worked as {workers} for generations.",
        f"The {workers} of {n} sell {product} in the towns along the {river.name}.",
        f"Most of the work is done in {workplace} on the edge of the town.",
        f"{product.capitalize()} from {n} is sold as far away as {rng.choice(REGIONS)}.",
        f"Barges on the {river.name} once carried the {product} of {n} down to {river.mouth}.",
        f"Today {town.industry} still employs about a third of the people of {n}.",
    ]
    geography = [
        f"{n} has a {temperature} and {weather} climate.",
        f"Winters in {n} bring {common}, and summers are short.",
        f"The {river.name} flows through the middle of the town and is crossed by several bridges.",
        f"The river {river.name} rises on the mountain {river.source.name} and ends in {river.mouth}.",
    ]
    for neighbour in town.neighbours:
        geography.append(f"The nearest town is {neighbour.name}, which also lies in {neighbour.region}.")
        geography.append(f"A road along the {river.name} connects {n} with {neighbour.name}.")
    culture = [
        f"The best known building in {n} is {town.landmark}.",
        f"Visitors to {n} often come to see {town.landmark}.",
        f"Most houses in the old town are built of {town.material}.",
        f"The local dish of {n} is {town.food}, which is served in every inn.",
        f"People in {n} say that nobody makes {town.food} as well as they do.",
    ]
    if town.festival is not None:
        festival = town.festival
        culture.append(f"Every year in {festival.month} the town holds its {festival.kind} festival.")
        culture.append(f"The {festival.kind} festival of {n} was first held in {festival.first_year}.")
    for person in town.people[:3]:
        culture.append(f"The {person.profession} {person.name} was born in {n} in {person.born}.")
    closing = [
        f"{n} is a quiet town known for its {workers}, its {town.food} and {town.landmark}.",
        f"For many travellers {n} is the most pleasant stop on the {river.name}.",
    ]
    school = rng.choice(["a grammar school", "a school of music", "a school for " + workers, "an old academy"])
    daily_life = [
        f"{n} has {school} and a small hospital.",
        f"Children in {n} learn the trade of {town.industry} from an early age.",
        f"The market of {n} is held every {rng.choice(['Monday', 'Wednesday', 'Friday', 'Saturday'])} "
        f"in the square near {town.landmark}.",
        f"At the market the {workers} of {n} sell {product} and buy bread and salt.",
        f"A ferry crosses the {river.name} at {n} in summer.",
        f"In winter the {river.name} near {n} sometimes freezes, and children skate on the ice.",
        f"The streets of {n} are narrow and paved with {town.material}.",
        f"The people of {n} are proud of their {town.industry} and of {town.landmark}.",
    ]
    sections = [(intro, 3, 4), (history, 5, 8), (economy, 5, 7), (geography, 4, 7), (daily_life, 3, 6),
                (culture, 4, 8), (closing, 1, 2)]
    return [sentence for index, (sentences, low, high) in enumerate(sections)
            for sentence in pick(rng, sentences, low, high, keep_first=index == 0)]


def river_article(rng: random.Random, river: River) -> list[str]:
    n = river.name
    source = river.source
    town_names = [town.name for town in river.towns]
    sentences = [
        f"The {n} is a river in {river.region}.",
        f"It is about {river.length_km} kilometres long and flows from the mountain {source.name} to {river.mouth}.",
        f"The {n} rises in the {source.forest} forests on the slopes of {source.name}.",
        f"Its water is {river.colour} and cold near the source.",
        f"The upper {n} runs fast over {source.rock}, while the lower river is slow and wide.",
        f"The {n} is home to {river.fish[0]} and {river.fish[1]}.",
        f"Fishing for {river.fish[0]} on the {n} has a long tradition.",
        f"There are {river.bridges} bridges across the {n}.",
        f"The worst flood of the {n} happened in {river.flood_year}.",
        f"After the flood of {river.flood_year} walls were built along the banks of the {n}.",
        f"The {n} reaches {river.mouth} after about {river.length_km} kilometres.",
    ]
    if town_names:
        sentences.append(f"The largest town on the {n} is {max(river.towns, key=lambda t: t.population).name}.")
        sentences.append(f"Towns on the {n} include " + _join(town_names[:5]) + ".")
        for town in river.towns[:4]:
            sentences.append(f"At {town.name} the {n} is used by the {INDUSTRIES[town.industry][0]} of the town.")
            sentences.append(f"{town.name} lies on the {town.direction} bank of the {n}.")
    else:
        sentences.append(f"No town lies on the {n}, and its valley is used only for grazing.")
    sentences.append(f"In summer the {n} is low and boats can travel only on its lower part.")
    sentences.append(f"In spring melting snow from {source.name} fills the {n}.")
    return pick(rng, sentences[:3], 3, 3) + pick(rng, sentences[3:], 11, 18)


def mountain_article(rng: random.Random, mountain: Mountain) -> list[str]:
    n = mountain.name
    climber = mountain.first_climber
    sentences = [
        f"{n} is a mountain in {mountain.region}.",
        f"It is {number(mountain.height_m)} metres high.",
        f"{n} is made mostly of {mountain.rock}.",
        f"The lower slopes of {n} are covered with {mountain.forest} forest.",
        f"Above the {mountain.forest} trees the slopes of {n} are bare {mountain.rock}.",
        f"{n} was first climbed in {mountain.first_climb_year} by the {climber.profession} {climber.name}.",
        f"{climber.last} reached the top of {n} after three days of climbing.",
        f"Before {mountain.first_climb_year} many believed that the top of {n} could not be reached.",
        f"Snow covers the top of {n} for most of the year.",
        f"On clear days the top of {n} can be seen from far across {mountain.region}.",
    ]
    for river in mountain.rivers[:3]:
        sentences.append(f"The river {river.name} rises on {n} and flows to {river.mouth}.")
    for town in mountain.towns[:3]:
        sentences.append(f"The town of {town.name} lies below {n} on the river {town.river.name}.")
    sentences.append(f"Shepherds from the villages below {n} take their sheep to its meadows in summer.")
    sentences.append(f"An old story says that a giant sleeps inside {n}.")
    sentences.append(f"The path to the top of {n} starts in the {mountain.forest} woods and climbs over "
                     f"{mountain.rock} ridges.")
    sentences.append(f"Eagles nest on the {mountain.rock} cliffs of {n}.")
    sentences.append(f"Walkers who climb {n} are warned that the weather can change quickly.")
    sentences.append(f"{mountain.rock.capitalize()} from {n} was once used to build houses in the valleys.")
    return pick(rng, sentences[:3], 3, 3) + pick(rng, sentences[3:], 9, 14)


def person_article(rng: random.Random, person: Person) -> list[str]:
    field_name, work_kind, made = PROFESSIONS[person.profession]
    n, last = person.name, person.last
    birthplace, deathplace = person.birthplace, person.deathplace
    early = [
        f"{n} ({person.born} to {person.died}) was {a(person.profession)} from {birthplace.name}.",
        f"{last} was born in {person.born} in {birthplace.name}, a town on the river {birthplace.river.name}.",
        f"The family of {last} lived from {birthplace.industry}, like most people in {birthplace.name}.",
        f"As a child {last} was {person.quality} and spent long days by the {birthplace.river.name}.",
    ]
    if person.teacher is not None:
        teacher = person.teacher
        early.append(f"{last} studied {field_name} with the {teacher.profession} {teacher.name}.")
        early.append(f"From {teacher.last} the young {last} learned the craft of {field_name}.")
    else:
        early.append(f"{last} taught himself {field_name} from old books." if rng.random() < 0.5 else
                     f"{last} taught herself {field_name} from old books.")
    work = [
        f"{last} is best known for {person.works[0]}.",
        f"The {person.profession} {made} {person.works[0]} in {person.born + rng.randint(20, 30)}.",
        f"Later {last} {made} {person.works[1]} and {person.works[2]}.",
        f"Critics admired {person.works[0]} for its calm and careful style.",
        f"Over a long life {last} {made} many {work_kind}.",
        f"Many of the {work_kind} of {last} show the valley of the {birthplace.river.name}.",
        f"The work of {last} changed {field_name} in {birthplace.region}.",
    ]
    later = [
        f"{last} died in {deathplace.name} in {person.died}.",
        f"In {person.died} {last} died at the age of {person.died - person.born}.",
        f"A street in {birthplace.name} is named after {n}.",
        f"The {work_kind} of {last} can be seen in the museum of {birthplace.name}.",
    ]
    for student in person.students[:2]:
        later.append(f"Among the students of {last} was the {student.profession} {student.name}.")
    middle = [
        f"As a young {person.profession} {last} travelled through {rng.choice(REGIONS)}.",
        f"In {person.born + rng.randint(25, 35)} {last} returned to {birthplace.name} and opened a workshop there.",
        f"{last} was {person.quality} in work and often spent years on a single piece.",
        f"Friends described {last} as a {person.quality} and honest person.",
        f"{last} wrote many letters about {field_name}, and some of them still survive.",
    ]
    return (pick(rng, early, 3, 6, keep_first=True) + pick(rng, middle, 2, 4) + pick(rng, work, 5, 7)
            + pick(rng, later, 2, 5))


def animal_article(rng: random.Random, animal: Animal) -> list[str]:
    group, covering, young, home, movement = ANIMAL_CLASSES[animal.kind]
    n = animal.name
    status_word, status_phrase = animal.status
    describer = animal.described_by
    sentences = [
        f"The {n} is {a(animal.kind)} found in {animal.habitat} of {animal.region}.",
        f"Like other {group}, the {n} has {covering}.",
        f"An adult {n} is about {animal.length_cm} centimetres long.",
        f"The {n} is {animal.colour}, with darker marks on the back.",
        f"Its {animal.colour} colour hides the {animal.kind} well in {animal.habitat}.",
        f"The {n} feeds mainly on {animal.diet}.",
        f"In {animal.habitat} the {n} searches for {animal.diet} early in the morning.",
        f"The main enemies of the {n} are {animal.predator}.",
        f"When {animal.predator} come near, the {animal.kind} quickly {movement} away.",
        f"Each year the {n} raises about {animal.eggs_or_young} {young} in a {home}.",
        f"The {young} stay in the {home} for several weeks.",
        f"The {n} can live for {animal.lifespan} years.",
        f"The {n} was first described in {animal.described_year} by the {describer.profession} {describer.name}.",
        f"{describer.last} found the {animal.kind} near {describer.birthplace.name}.",
        f"Today the {n} is {status_word} and {status_phrase}.",
        f"In {animal.region} the {n} is {a(status_word)} sight.",
        f"The {n} is most active at {rng.choice(['dawn', 'dusk', 'night', 'midday'])}.",
        f"In winter the {n} stays close to its {home}.",
        f"Farmers in {animal.region} like the {n} because it eats {animal.diet}.",
        f"The {n} is often confused with other {group}, but its {animal.colour} colour sets it apart.",
    ]
    return pick(rng, sentences[:2], 2, 2) + pick(rng, sentences[2:], 11, 17)


def festival_article(rng: random.Random, festival: Festival) -> list[str]:
    carried, celebrated = FESTIVAL_KINDS[festival.kind]
    town = festival.town
    n = f"{festival.kind.capitalize()} Festival of {town.name}"
    sentences = [
        f"The {n} is a yearly celebration in {town.name}, a town in {town.region}.",
        f"It is held every {festival.month} and lasts {festival.days} days.",
        f"The festival marks {celebrated}.",
        f"The {festival.kind} festival was first held in {festival.first_year}.",
        f"During the festival the people of {town.name} walk through the streets with {carried}.",
        f"The walk ends at {town.landmark}, the best known building of {town.name}.",
        f"Each family cooks {festival.food} for the festival.",
        f"On the last day the {carried} are taken down to the {town.river.name}.",
        f"The {workers_of(town)} of {town.name} close their work for the {festival.days} days of the festival.",
        f"In {festival.month} many visitors travel to {town.name} for the festival.",
        f"The first {festival.kind} festival of {festival.first_year} was small, with only a few families.",
    ]
    sentences.append(f"Music is played in the square of {town.name} until late at night.")
    sentences.append(f"Children take part in the festival by carrying small {carried}.")
    return pick(rng, sentences[:2], 2, 2) + pick(rng, sentences[2:], 8, 11)


def workers_of(town: Town) -> str:
    return INDUSTRIES[town.industry][0]


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def generate_documents(seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    world = build_world(rng, towns=220, rivers=70, mountains=45, people=260, animals=150)
    documents: list[list[str]] = []
    for town in world.towns:
        documents.append(town_article(rng, town))
    for river in world.rivers:
        documents.append(river_article(rng, river))
    for mountain in world.mountains:
        documents.append(mountain_article(rng, mountain))
    for person in world.people:
        documents.append(person_article(rng, person))
    for animal in world.animals:
        documents.append(animal_article(rng, animal))
    for festival in world.festivals:
        documents.append(festival_article(rng, festival))
    rng.shuffle(documents)
    return documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "..", "data", "sample"),
                        help="directory for corpus-NN.txt")
    parser.add_argument("--seed", type=int, default=12345, help="random seed; same seed, same bytes")
    parser.add_argument("--num_files", type=int, default=4, help="number of corpus files")
    args = parser.parse_args()
    documents = generate_documents(args.seed)
    os.makedirs(args.output, exist_ok=True)
    total_bytes = 0
    for file_index in range(args.num_files):
        path = os.path.join(args.output, f"corpus-{file_index:02d}.txt")
        text = "\n".join("\n".join(document) + "\n" for document in documents[file_index::args.num_files])
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        total_bytes += len(text.encode("utf-8"))
    sentences = sum(len(document) for document in documents)
    print(f"wrote {len(documents)} documents, {sentences} sentences, {total_bytes / 1e6:.2f} MB "
          f"in {args.num_files} files to {os.path.normpath(args.output)}")


if __name__ == "__main__":
    main()
