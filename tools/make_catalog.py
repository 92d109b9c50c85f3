"""Write a synthetic MetObjects.csv: the real header, a UTF-8 byte-order mark, and hostile fields.

The Met's open-access catalogue has ~480,000 rows (~300 MB). This generator writes any
number of rows with the real columns and roughly the real department sizes (approximate,
from the public file's counts), so `fetch --from-csv` and tools/bench_catalog.py can be
exercised offline. Fields carry what breaks naive parsers: commas, doubled quotes and
newlines inside quoted fields, empty fields, non-ASCII text, years that are negative,
blank or not numbers, `True`/`False` in odd case, and a few repeated Object IDs.

usage:
  python tools/make_catalog.py OUT.csv [--rows 480000] [--seed 1]
"""
from __future__ import annotations

import argparse
import csv
import random
import sys
from typing import Iterator

HEADER = ("Object Number,Is Highlight,Is Timeline Work,Is Public Domain,Object ID,Gallery Number,"
          "Department,AccessionYear,Object Name,Title,Culture,Period,Dynasty,Reign,Portfolio,"
          "Constituent ID,Artist Role,Artist Prefix,Artist Display Name,Artist Display Bio,"
          "Artist Suffix,Artist Alpha Sort,Artist Nationality,Artist Begin Date,Artist End Date,"
          "Artist Gender,Artist ULAN URL,Artist Wikidata URL,Object Date,Object Begin Date,"
          "Object End Date,Medium,Dimensions,Credit Line,Geography Type,City,State,County,Country,"
          "Region,Subregion,Locale,Locus,Excavation,River,Classification,Rights and Reproduction,"
          "Link Resource,Object Wikidata URL,Metadata Date,Repository,Tags,Tags AAT URL,"
          "Tags Wikidata URL").split(",")

# department -> (approximate share of the real file's rows, [(classification, object name, share)])
DEPARTMENTS = {
    "Drawings and Prints": (0.36, [("Prints", "Print", 0.8), ("Drawings", "Drawing", 0.15),
                                   ("Prints|Ephemera", "Trade card", 0.05)]),
    "European Sculpture and Decorative Arts": (0.09, [("Ceramics-Porcelain", "Plate", 0.4),
                                                      ("Metalwork-Silver", "Spoon", 0.3),
                                                      ("Sculpture", "Statuette", 0.3)]),
    "Asian Art": (0.077, [("Paintings", "Hanging scroll", 0.3), ("Ceramics", "Bowl", 0.4),
                          ("Prints", "Print", 0.3)]),
    "Photographs": (0.077, [("Photographs", "Photograph", 1.0)]),
    "Greek and Roman Art": (0.069, [("Vases", "Amphora", 0.5), ("Stone Sculpture", "Head", 0.5)]),
    "The Costume Institute": (0.065, [("Costume", "Dress", 1.0)]),
    "Egyptian Art": (0.057, [("Scarabs", "Scarab", 0.6), ("Jewelry", "Bead", 0.4)]),
    "American Decorative Arts": (0.038, [("Paintings", "Painting", 0.15), ("Furniture", "Chair", 0.45),
                                         ("Glass", "Bottle", 0.4)]),
    "Arms and Armor": (0.03, [("Swords", "Sword", 0.5), ("Armor Parts", "Helmet", 0.5)]),
    "Islamic Art": (0.03, [("Codices", "Folio", 0.5), ("Ceramics", "Tile", 0.5)]),
    "Arts of Africa, Oceania, and the Americas": (0.025, [("Sculpture", "Figure", 0.6),
                                                          ("Textiles", "Mantle", 0.4)]),
    "Modern Art": (0.027, [("Paintings", "Painting", 0.3), ("Prints", "Print", 0.5),
                           ("Photographs", "Photograph", 0.2)]),
    "Medieval Art": (0.015, [("Metalwork", "Reliquary", 0.5), ("Sculpture", "Statue", 0.5)]),
    "Ancient Near Eastern Art": (0.013, [("Stone", "Seal", 1.0)]),
    "Musical Instruments": (0.011, [("Chordophone-Lute", "Lute", 1.0)]),
    "The Robert Lehman Collection": (0.006, [("Paintings", "Painting", 0.3), ("Drawings", "Drawing", 0.7)]),
    "European Paintings": (0.0055, [("Paintings", "Painting", 1.0)]),
    "The Cloisters": (0.005, [("Sculpture", "Statue", 0.6), ("Glass-Stained", "Panel", 0.4)]),
    "The Libraries": (0.0015, [("Books", "Book", 1.0)]),
}
ARTISTS = ["Rembrandt van Rijn", "Jean-Baptiste Greuze", "Élisabeth Louise Vigée Le Brun",
           'Gilbert Stuart, "the elder"', "Katsushika Hokusai 葛飾北斎", "Unknown, French",
           "Julia Margaret Cameron", "Master of the \"Saint Lucy\" Legend"]
TITLES = ["Portrait of a Woman", "Madame Charpentier and Her Children", 'The "Blue" Boy, study',
          "Head of a Man,\nin profile", "Untitled", "Plate, with arms of the Medici", "Fragment",
          "Saint Catherine; or, The Martyr", "Lady at the Tea Table\r\n(second state)"]


def department_sizes(rows: int) -> dict:
    """How many of `rows` rows each department gets (sums to `rows`)."""
    total = sum(share for share, _ in DEPARTMENTS.values())
    sizes = {d: int(rows * share / total) for d, (share, _) in DEPARTMENTS.items()}
    sizes["Drawings and Prints"] += rows - sum(sizes.values())
    return sizes


def make_rows(rows: int, seed: int = 1) -> Iterator[dict]:
    """Rows as dicts keyed by HEADER, in a shuffled department order, ids ascending."""
    rng = random.Random(seed)
    plan = [d for d, n in department_sizes(rows).items() for _ in range(n)]
    rng.shuffle(plan)
    oid = 0
    for k, dep in enumerate(plan):
        oid += rng.choice((1, 1, 1, 2, 7))
        if k % 997 == 500:
            oid -= 1  # a repeated Object ID now and then
        classes = DEPARTMENTS[dep][1]
        cls, name, _ = rng.choices(classes, weights=[c[2] for c in classes])[0]
        begin = rng.choice((rng.randrange(1300, 1950), rng.randrange(1300, 1950), rng.randrange(-3000, 0)))
        end = begin + rng.choice((0, 0, 5, 25))
        odd = rng.random()
        b, e = str(begin), str(end)
        if odd < 0.01:
            b = e = ""
        elif odd < 0.015:
            b = "ca. 1800"
        artist = rng.choice(ARTISTS) if rng.random() < 0.7 else ""
        pd = rng.random() < 0.55
        row = dict.fromkeys(HEADER, "")
        row.update({
            "Object Number": f"{1900 + k % 120}.{k % 977}{', a-c' if k % 13 == 0 else ''}",
            "Is Highlight": rng.choice(("False", "False", "True")),
            "Is Timeline Work": "False",
            "Is Public Domain": ("True" if pd else "False") if rng.random() > 0.01 else ("true" if pd else "FALSE"),
            "Object ID": str(oid), "Department": dep, "AccessionYear": str(1870 + k % 150),
            "Object Name": name, "Title": rng.choice(TITLES), "Culture": rng.choice(("", "French", "Japanese")),
            "Constituent ID": str(10000 + k % 5000) if artist else "",
            "Artist Role": "Artist" if artist else "", "Artist Display Name": artist,
            "Artist Display Bio": "Dutch, Leiden 1606–1669 Amsterdam" if artist else "",
            "Artist Alpha Sort": artist, "Artist Nationality": "Dutch" if artist else "",
            "Artist Begin Date": "1606" if artist else "", "Artist End Date": "1669" if artist else "",
            "Artist ULAN URL": f"http://vocab.getty.edu/page/ulan/5000{k % 99999:05d}" if artist else "",
            "Artist Wikidata URL": f"https://www.wikidata.org/wiki/Q{5598 + k % 9000}" if artist else "",
            "Object Wikidata URL": f"https://www.wikidata.org/wiki/Q{19911000 + k}" if k % 5 == 0 else "",
            "Object Date": f"ca. {b}" if b else "",
            "Object Begin Date": b, "Object End Date": e,
            "Medium": rng.choice(("Oil on canvas", "Ink and color on silk", 'Albumen silver print, "matte"',
                                  "Etching;\nsecond state of three")),
            "Dimensions": f"{20 + k % 90} x {15 + k % 70} in. ({51 + k % 230} x {38 + k % 180} cm)",
            "Credit Line": "Bequest of Benjamin Altman, 1913" if k % 3 else "Gift of \"Friends\", 1950",
            "Classification": cls, "Link Resource": f"http://www.metmuseum.org/art/collection/search/{oid}",
            "Metadata Date": "", "Repository": "Metropolitan Museum of Art, New York, NY",
            "Tags": "Portraits|Women" if k % 4 == 0 else "",
            "Tags AAT URL": ("http://vocab.getty.edu/page/aat/300015637|http://vocab.getty.edu/page/aat/300025943"
                             if k % 4 == 0 else ""),
            "Tags Wikidata URL": ("https://www.wikidata.org/wiki/Q134307|https://www.wikidata.org/wiki/Q467"
                                  if k % 4 == 0 else ""),
        })
        yield row


def write_catalog(path, rows: int, seed: int = 1) -> int:
    """Write `rows` rows to `path` (UTF-8 with BOM, CRLF like the real file); returns rows."""
    n = 0
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for row in make_rows(rows, seed):
            w.writerow([row[c] for c in HEADER])
            n += 1
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=480_000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    n = write_catalog(a.out, a.rows, a.seed)
    print(f"wrote {n} rows to {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
