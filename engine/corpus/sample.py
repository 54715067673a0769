"""The built-in sample: 300 short English sentences of our own, the same every time.

Sixty are written out below; the rest are put together from the word lists below with a fixed seed. A third of
the generated ones repeat a name or a phrase within the sentence ("Anna met Tom at the market, and later Anna
thanked Tom"), so the duplicate-token and induction scores are defined on them.
"""

from __future__ import annotations

import random

from .texts import Corpus

WRITTEN = (
    "The cat slept on the warm windowsill all afternoon.",
    "A fluffy blue creature roamed the verdant forest.",
    "The Eiffel Tower is located in the city of Paris.",
    "The gardener trapped the burrowing mole near the roses.",
    "In chemistry, the amount of a substance is measured in moles.",
    "She sat on the river bank and watched the boats go by.",
    "He deposited his salary at the bank on Friday morning.",
    "Rain fell softly on the roof while the children slept.",
    "The old clock in the hall struck midnight.",
    "Bread rises because yeast produces small bubbles of gas.",
    "The train to Edinburgh leaves at half past nine.",
    "Water boils at one hundred degrees at sea level.",
    "My grandmother grows tomatoes, beans and potatoes in her garden.",
    "The orchestra tuned their instruments before the concert began.",
    "Light travels faster than sound.",
    "The committee postponed the vote until next week.",
    "A small boat drifted slowly towards the harbour.",
    "The students read three chapters before the exam.",
    "Bees collect nectar and turn it into honey.",
    "The museum opens at ten and closes at six.",
    "He forgot his umbrella, so he got wet on the way home.",
    "The recipe needs two eggs, a cup of flour and some milk.",
    "Mountains in the north are covered with snow in winter.",
    "The doctor asked the patient to take a deep breath.",
    "Our neighbours painted their front door bright yellow.",
    "The library lends books, films and music for free.",
    "A fox crossed the road just before dawn.",
    "The engineer checked every bolt on the bridge.",
    "Tea is often served with milk in Britain.",
    "The phone rang twice and then stopped.",
    "One, two, three, four, five, six, seven, eight, nine, ten.",
    "Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday.",
    "January, February, March, April, May, June, July, August.",
    "A B C D E F G H I J K L M N O P.",
    "The quick brown fox jumps over the lazy dog.",
    "To be or not to be, that is the question.",
    "The capital of France is Paris and the capital of Italy is Rome.",
    "def add(a, b): return a + b",
    "for i in range(10): print(i)",
    "The price rose from 120 dollars to 150 dollars in a year.",
    "Please close the window; it is cold in here.",
    "The spacecraft entered orbit around Mars after seven months.",
    "A good night's sleep helps the memory.",
    "The baker opened the shop at six and sold out by noon.",
    "Two plus two is four, and four plus four is eight.",
    "The river flows from the mountains down to the sea.",
    "Whales are mammals, not fish.",
    "The map showed a path through the forest to the lake.",
    "The lamp flickered and the room went dark.",
    "Every morning she runs five kilometres before breakfast.",
    "The mole on his cheek had grown, so he saw a doctor.",
    "The tower of the castle could be seen for miles.",
    "Interest rates at the central bank rose again this year.",
    "The dog barked at the postman, and the postman laughed.",
    "Green tea, black tea, green tea, black tea, green tea.",
    "The first rule is simple: the first rule is never to give up.",
    "Red, blue, red, blue, red, blue, red, blue.",
    "Alice sent a letter to Bob, and Bob sent a letter to Alice.",
    "The wind blew the leaves across the empty square.",
    "Snow covered the village, and the village fell silent.",
)

NAMES = ("Anna", "Tom", "Maria", "James", "Lena", "David", "Sofia", "Peter", "Clara", "Omar", "Yuki", "Ravi")
PLACES = ("market", "station", "library", "beach", "museum", "park", "office", "cafe", "harbour", "school")
THINGS = ("book", "apple", "letter", "key", "umbrella", "ticket", "map", "cake", "lamp", "bicycle")
ADJECTIVES = ("red", "old", "small", "heavy", "strange", "bright", "broken", "new", "quiet", "green")
VERBS = ("found", "lost", "bought", "painted", "carried", "borrowed", "dropped", "cleaned", "sold", "hid")
TIMES = ("in the morning", "after lunch", "on Sunday", "at night", "before dinner", "in the spring")

N_SENTENCES = 300
SEED = 2023


def _generated(rng: random.Random) -> str:
    a, b = rng.sample(NAMES, 2)
    place, thing, adj, verb, when = (rng.choice(x) for x in (PLACES, THINGS, ADJECTIVES, VERBS, TIMES))
    form = rng.randrange(6)
    if form == 0:
        return f"{a} met {b} at the {place} {when}, and later {a} thanked {b}."
    if form == 1:
        return f"The {adj} {thing} that {a} {verb} was the {adj} {thing} from the {place}."
    if form == 2:
        return f"{a} {verb} a {adj} {thing} at the {place} {when}."
    if form == 3:
        return f"{when.capitalize()}, {a} gave {b} a {thing}, because {b} had lost one."
    if form == 4:
        return f"At the {place}, {a} and {b} talked about the {adj} {thing} for an hour."
    return f"{a} asked where the {thing} was; {b} said the {thing} was at the {place}."


def sample_corpus(n: int = N_SENTENCES) -> Corpus:
    """The first n sentences of the built-in sample (the written ones first, then generated ones)."""
    rng = random.Random(SEED)
    texts = list(WRITTEN)
    while len(texts) < n:
        texts.append(_generated(rng))
    return Corpus(tuple(texts[:n]), "sample")
