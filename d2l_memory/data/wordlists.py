"""Word lists for the synthetic personal-memory profiles (:mod:`d2l_memory.data.personal`).

All lists are hand-written, free of digits, and hold single values that can be quoted verbatim
as short exact answers; no value of one list is a word of another. Person names and pet names are
split between train/val/test (see :func:`d2l_memory.data.personal.names_for_split`); the other
values are shared by all splits.
"""

from __future__ import annotations

# fmt: off
_FEMALE = (
    "Maria", "Ana", "Sofia", "Emma", "Olivia", "Chloe", "Lucia", "Hannah", "Leila", "Priya", "Aisha",
    "Yuki", "Mei", "Ingrid", "Freya", "Clara", "Nora", "Elena", "Zara", "Amara", "Isabel", "Greta",
    "Lina", "Marta", "Rosa", "Paula", "Julia", "Carmen", "Beatriz", "Helena", "Sara", "Laila", "Nadia",
    "Fatima", "Keiko", "Hana", "Anika", "Sienna", "Maya", "Ruth", "Esther", "Alice", "Vera", "Irene",
    "Tessa", "Daphne", "Naomi", "Mila", "Ivy", "Leah", "Camille", "Margot", "Astrid", "Sigrid", "Bianca",
    "Giulia", "Chiara", "Noor", "Yara", "Selin", "Ayla", "Kavya", "Ishani", "Thandi", "Ama", "Zoe",
    "Ruby", "Hazel", "Iris", "Violet", "Agnes", "Edith", "Wanda", "Olga", "Dana",
)
_MALE = (
    "James", "Lucas", "Mateo", "Noah", "Liam", "Omar", "Hassan", "Ravi", "Arjun", "Kenji", "Hiro", "Wei",
    "Tomas", "Pedro", "Diego", "Marco", "Luca", "Felix", "Oscar", "Hugo", "Anton", "Erik", "Lars", "Nils",
    "Pablo", "Rafael", "Samuel", "Daniel", "David", "Elias", "Jonas", "Karim", "Malik", "Tariq", "Yusuf",
    "Kofi", "Kwame", "Sipho", "Ivan", "Dmitri", "Pavel", "Mikhail", "Stefan", "Bruno", "Andre", "Victor",
    "Simon", "Peter", "George", "Henry", "Arthur", "Oliver", "Jack", "Leo", "Theo", "Max", "Ben", "Adam",
    "Isaac", "Caleb", "Nikhil", "Rohan", "Dev", "Tenzin", "Jorge", "Emil", "Axel", "Magnus", "Finn",
    "Ewan", "Callum", "Declan", "Ronan", "Milo", "Ezra",
)
_NEUTRAL = (
    "Alex", "Sam", "Robin", "Jordan", "Taylor", "Casey", "Riley", "Quinn", "Avery", "Rowan", "Sage",
    "Kai", "Remy", "Ari", "Jules", "Noa", "Eden", "Skyler", "Reese", "Morgan",
)
#: (first name, possessive pronoun) pairs.
FIRST_NAMES: tuple[tuple[str, str], ...] = (
    tuple((n, "her") for n in _FEMALE) + tuple((n, "his") for n in _MALE) + tuple((n, "their") for n in _NEUTRAL)
)

LAST_NAMES: tuple[str, ...] = (
    "Silva", "Costa", "Novak", "Kowalski", "Jensen", "Larsen", "Berg", "Lindqvist", "Moreau", "Dubois",
    "Rossi", "Bianchi", "Garcia", "Lopez", "Fernandez", "Ortega", "Romero", "Nakamura", "Tanaka", "Sato",
    "Kim", "Park", "Chen", "Wang", "Liu", "Patel", "Sharma", "Iyer", "Reddy", "Khan", "Ahmed", "Haddad",
    "Nasser", "Okafor", "Mensah", "Adeyemi", "Dlamini", "Mwangi", "Petrov", "Ivanova", "Horvat", "Kovacs",
    "Nagy", "Popescu", "Schmidt", "Weber", "Fischer", "Keller", "Huber", "Vogel", "Murphy", "Kelly",
    "Walsh", "Byrne", "Evans", "Hughes", "Turner", "Brooks", "Reed", "Ward", "Foster", "Hayes", "Bennett",
    "Carter", "Mitchell", "Sullivan", "Price", "Fraser", "Reyes", "Morales",
)

CITIES: tuple[str, ...] = (
    "Lisbon", "Porto", "Madrid", "Seville", "Valencia", "Barcelona", "Marseille", "Lyon", "Paris",
    "Brussels", "Antwerp", "Amsterdam", "Utrecht", "Rotterdam", "Hamburg", "Berlin", "Munich", "Cologne",
    "Leipzig", "Vienna", "Zurich", "Geneva", "Milan", "Turin", "Bologna", "Florence", "Naples", "Athens",
    "Valletta", "Bucharest", "Budapest", "Prague", "Krakow", "Warsaw", "Vilnius", "Riga", "Tallinn",
    "Helsinki", "Stockholm", "Oslo", "Bergen", "Copenhagen", "Aarhus", "Dublin", "Cork", "Edinburgh",
    "Glasgow", "Manchester", "Leeds", "Bristol", "London", "Toronto", "Montreal", "Vancouver", "Chicago",
    "Denver", "Seattle", "Portland", "Boston", "Austin", "Atlanta", "Miami", "Mexico City", "Bogota",
    "Lima", "Santiago", "Buenos Aires", "Montevideo", "Nairobi", "Accra", "Lagos", "Cape Town", "Cairo",
    "Istanbul", "Tbilisi", "Dubai", "Mumbai", "Bangalore", "Singapore", "Kyoto", "Osaka", "Seoul",
    "Taipei", "Melbourne", "Auckland",
)

JOBS: tuple[str, ...] = (
    "nurse", "teacher", "architect", "accountant", "pharmacist", "dentist", "software engineer",
    "data analyst", "graphic designer", "electrician", "plumber", "carpenter", "chef", "baker",
    "journalist", "photographer", "librarian", "lawyer", "paramedic", "veterinarian", "physiotherapist",
    "civil engineer", "translator", "marketing manager", "sales representative", "pilot",
    "flight attendant", "bus driver", "firefighter", "police officer", "social worker", "psychologist",
    "research scientist", "lab technician", "gardener", "florist", "tailor", "barista", "bookkeeper",
    "real estate agent", "urban planner", "museum curator", "sound engineer", "video editor",
    "game designer", "web developer", "radiographer", "midwife", "optician", "surveyor", "mechanic",
    "welder", "interior designer", "copywriter", "event planner", "personal trainer", "music teacher",
    "school principal", "product manager", "hotel manager",
)

_EMPLOYER_FIRST = (
    "Northwind", "Bluefin", "Silverline", "Redwood", "Brightpath", "Ironbridge", "Greenleaf", "Starling",
    "Harbor", "Summit", "Oakridge", "Clearwater", "Maple", "Falcon", "Cobalt", "Juniper", "Lighthouse",
    "Riverside", "Copperfield", "Evergreen", "Granite", "Horizon", "Kestrel", "Meadow", "Pinecrest",
)
_EMPLOYER_SECOND = (
    "Labs", "Logistics", "Health", "Systems", "Foods", "Media", "Studio", "Bank", "Energy", "Works",
)
#: Synthetic company names, e.g. "Northwind Labs" (250 of them).
EMPLOYERS: tuple[str, ...] = tuple(f"{a} {b}" for a in _EMPLOYER_FIRST for b in _EMPLOYER_SECOND)

PET_NAMES: tuple[str, ...] = (
    "Biscuit", "Pepper", "Mochi", "Luna", "Buster", "Noodle", "Pickles", "Frodo", "Ginger", "Shadow",
    "Pumpkin", "Bonnie", "Bean", "Toffee", "Crumble", "Nacho", "Bagel", "Coco", "Rusty", "Smokey",
    "Peanut", "Muffin", "Bubbles", "Sprout", "Tofu", "Hopper", "Cosmo", "Pixel", "Rocket", "Pretzel",
    "Truffle", "Dumpling", "Bramble", "Jasper", "Clover", "Hazelnut", "Marble", "Button", "Whiskers",
    "Domino", "Scout", "Bandit", "Sunny", "Otis", "Poppy", "Chestnut", "Fudge", "Pebble", "Tango",
    "Winston", "Nugget", "Socks", "Oreo", "Zorro", "Yoshi", "Gizmo", "Comet", "Archie", "Cinnamon",
    "Marshmallow", "Fig", "Tilly", "Barnaby", "Dotty", "Pippin", "Rolo", "Squeak", "Teddy", "Wobble",
    "Ziggy",
)

PET_SPECIES: tuple[str, ...] = (
    "dog", "cat", "rabbit", "parrot", "hamster", "tortoise", "guinea pig", "ferret", "goldfish", "budgie",
    "gecko", "hedgehog",
)

FOODS: tuple[str, ...] = (
    "ramen", "sushi", "lasagna", "paella", "tacos", "pad thai", "pho", "dumplings", "risotto", "falafel",
    "shakshuka", "biryani", "butter chicken", "pierogi", "goulash", "moussaka", "gnocchi", "burritos",
    "pancakes", "waffles", "fish and chips", "bibimbap", "tom yum soup", "empanadas", "ceviche",
    "croissants", "mac and cheese", "carbonara", "pizza", "hummus", "tiramisu", "cheesecake", "apple pie",
    "chili", "fried rice", "laksa", "jollof rice", "couscous", "tagine", "poke bowls", "katsu curry",
    "gyoza", "enchiladas", "quiche", "ratatouille", "souvlaki", "banh mi", "dal", "lentil soup",
    "tortilla",
)

COLOURS: tuple[str, ...] = (
    "red", "blue", "green", "yellow", "purple", "orange", "pink", "teal", "turquoise", "navy", "maroon",
    "olive", "lavender", "coral", "mint green", "burgundy", "indigo", "silver", "gold", "black", "white",
    "grey", "beige", "emerald", "crimson", "sky blue", "peach",
)

SPORTS: tuple[str, ...] = (
    "tennis", "football", "basketball", "volleyball", "badminton", "table tennis", "swimming", "cycling",
    "running", "rock climbing", "bouldering", "surfing", "skiing", "snowboarding", "rowing", "kayaking",
    "golf", "cricket", "rugby", "baseball", "handball", "ice hockey", "fencing", "boxing", "judo",
    "karate", "yoga", "pilates", "squash", "padel", "hiking", "sailing", "archery", "gymnastics",
    "water polo", "ultimate frisbee", "triathlon", "horse riding",
)

ALLERGIES: tuple[str, ...] = (
    "peanuts", "tree nuts", "shellfish", "eggs", "milk", "soy", "wheat", "sesame", "strawberries", "kiwi",
    "penicillin", "bee stings", "cats", "dust mites", "pollen", "latex", "mustard", "celery", "oats",
    "mangoes",
)

CARS: tuple[str, ...] = (
    "Toyota Corolla", "Toyota Prius", "Honda Civic", "Honda Jazz", "Mazda CX-5", "Nissan Leaf",
    "Subaru Outback", "Volkswagen Passat", "Volkswagen Polo", "Skoda Octavia", "Audi A4", "BMW X3",
    "Mercedes A-Class", "Renault Clio", "Peugeot 208", "Citroen C3", "Fiat Panda", "Fiat Punto",
    "Volvo XC60", "Volvo V70", "Ford Focus", "Ford Fiesta", "Kia Picanto", "Kia Niro", "Hyundai Kona",
    "Hyundai Tucson", "Tesla Model Y", "Tesla Model S", "Seat Ibiza", "Dacia Duster", "Mini Cooper",
    "Jeep Wrangler", "Suzuki Swift", "Opel Corsa", "Chevrolet Bolt", "Mitsubishi Outlander",
    "Land Rover Defender", "Porsche Cayenne", "Lexus RX",
)

MONTHS: tuple[str, ...] = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
    "November", "December",
)
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# fmt: on


def birthday_choices() -> tuple[str, ...]:
    """All calendar days as ``"March 14"`` strings."""
    return tuple(f"{m} {d}" for m, n in zip(MONTHS, _MONTH_DAYS, strict=True) for d in range(1, n + 1))
