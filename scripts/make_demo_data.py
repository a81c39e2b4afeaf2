#!/usr/bin/env python3
"""Generate the bundled demo dataset of the NER job (data/demo/).

News-like sentences built from templates and the word lists in data/wordlists/ (plain
facts: names of places, countries, organisations, people, months and days), tagged with
the original job's 11 BIO tags: O and B-/I- of geo, gpe, tim, org, per (the tag set of
the Groningen Meaning Bank's NER corpus). Deterministic: the same seed gives the same
files byte for byte.

Writes, in the original's format:
  dataset.csv       sentence_identifier,sentence,tagstr,code_per_tag
  enumerator.json   label -> id
  archetype.json    id -> label
  vocab.txt         a WordPiece vocabulary built from the corpus (lower-cased)
  hyperspace.json   the default hyper-parameter search space

Usage: scripts/make_demo_data.py [--sentences N] [--seed S] [--out data/demo]
"""
import argparse
import collections
import csv
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["O", "B-geo", "I-geo", "B-gpe", "I-gpe", "B-tim", "I-tim",
          "B-org", "I-org", "B-per", "I-per"]

# Slots: {geo} {gpe} {tim} {org} {per}; every other word is O.
TEMPLATES = [
    "{per} arrived in {geo} on {tim} for talks with {org} officials .",
    "{gpe} troops killed at least {num} militants near {geo} on {tim} .",
    "The {org} says {gpe} forces have withdrawn from {geo} .",
    "{per} told reporters in {geo} that the {gpe} government will not resign .",
    "Officials in {geo} say {num} people died when a bomb exploded near a market on {tim} .",
    "The {org} has approved a loan of {num} million dollars to {geo} .",
    "{gpe} police arrested {num} suspects in {geo} on {tim} .",
    "{per} met {per} in {geo} to discuss the crisis in {geo} .",
    "Thousands of people marched through {geo} on {tim} to protest against the {org} .",
    "The {gpe} foreign minister , {per} , is expected to visit {geo} in {tim} .",
    "{org} spokesman {per} said the talks in {geo} had failed .",
    "Heavy rain has flooded parts of {geo} , forcing {num} families from their homes .",
    "{per} said {geo} is ready to resume negotiations with {geo} .",
    "The {org} will meet in {geo} on {tim} to review the {gpe} proposal .",
    "Oil prices rose on {tim} after {org} decided to cut production .",
    "A {gpe} court has sentenced {num} men to prison for attacks in {geo} .",
    "{gpe} and {gpe} officials signed a trade agreement in {geo} on {tim} .",
    "Rebels attacked a convoy near {geo} , killing {num} soldiers .",
    "{per} won the election in {geo} with {num} percent of the vote .",
    "The {org} said it is deeply concerned about the situation in {geo} .",
    "Doctors in {geo} say {per} is in stable condition .",
    "{gpe} leaders gathered in {geo} for a summit of the {org} .",
    "The {org} reported on {tim} that the economy of {geo} grew by {num} percent .",
    "An earthquake struck {geo} on {tim} , damaging hundreds of buildings .",
    "{per} , who leads the {org} , denied the accusations .",
    "Hundreds of {gpe} workers went on strike in {geo} on {tim} .",
    "The {gpe} army says it has captured a senior {org} commander near {geo} .",
    "{per} will travel to {geo} and {geo} later this month .",
    "Election officials in {geo} say turnout was about {num} percent .",
    "The {org} has sent aid workers to {geo} after the floods .",
    "In {tim} , {per} announced plans to reform the {gpe} tax system .",
    "Security was tight in {geo} ahead of the visit by {per} .",
    "A spokesman for the {org} said {num} peacekeepers will be deployed in {geo} .",
    "{gpe} media report that {per} has been replaced as head of the {org} .",
    "Fighting between {gpe} forces and rebels continued in {geo} on {tim} .",
    "The talks are expected to resume in {geo} next week .",
    "Prices in {geo} rose sharply last year .",
    "{per} called for calm after clashes in {geo} left {num} people injured .",
    "The {org} is investigating reports of abuse at a prison in {geo} .",
    "Inflation in {geo} fell to {num} percent in {tim} , the {org} said .",
]


def read_list(name):
    return [line.strip() for line in (ROOT / "data" / "wordlists" / name).read_text().splitlines()
            if line.strip()]


class Source:
    def __init__(self, rng):
        self.rng = rng
        self.cities = read_list("cities.txt")
        self.countries = read_list("countries.txt")
        self.regions = read_list("regions.txt")
        self.nationalities = read_list("nationalities.txt")
        self.organisations = read_list("organisations.txt")
        self.first = read_list("first_names.txt")
        self.last = read_list("last_names.txt")
        self.titles = read_list("titles.txt")
        self.months = read_list("months.txt")
        self.days = read_list("days.txt")

    def entity(self, kind):
        """Words and tags of one entity; a leading 'the' stays outside it (O)."""
        r = self.rng
        if kind == "geo":
            name = r.choice(r.choice([self.cities, self.cities, self.countries, self.regions]))
        elif kind == "gpe":
            name = r.choice(self.nationalities)
        elif kind == "org":
            name = r.choice(self.organisations)
        elif kind == "per":
            form = r.random()
            if form < 0.35:
                name = f"{r.choice(self.first)} {r.choice(self.last)}"
            elif form < 0.7:
                name = f"{r.choice(self.titles)} {r.choice(self.last)}"
            elif form < 0.85:
                name = f"{r.choice(self.titles)} {r.choice(self.first)} {r.choice(self.last)}"
            else:
                name = r.choice(self.last)
        else:  # tim
            form = r.random()
            if form < 0.45:
                name = r.choice(self.days)
            elif form < 0.75:
                name = r.choice(self.months)
            elif form < 0.9:
                name = f"{r.choice(self.months)} {r.randint(1, 28)}"
            else:
                name = str(r.randint(1990, 2008))
        words = name.split()
        tags = []
        if words[0] == "the":
            tags.append("O")
            words_in = words[1:]
        else:
            words_in = words
        tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(words_in) - 1)
        return words, tags

    def sentence(self):
        template = self.rng.choice(TEMPLATES)
        words, tags = [], []
        for token in template.split():
            if token == "{num}":
                words.append(str(self.rng.choice([2, 3, 5, 7, 10, 12, 15, 20, 25, 30, 40, 50, 100])))
                tags.append("O")
            elif token.startswith("{") and token.endswith("}"):
                w, t = self.entity(token[1:-1])
                words += w
                tags += t
            else:
                words.append(token)
                tags.append("O")
        for i in range(len(words) - 1):
            if words[i] in ("a", "A") and words[i + 1][0] in "AEIOU":
                words[i] += "n"
        if words[0][0].islower():
            words[0] = words[0][0].upper() + words[0][1:]
        return words, tags


def build_vocab(sentences, min_count):
    """[PAD] [UNK] [CLS] [SEP] [MASK], every character and its ## form, then the words
    seen at least min_count times (lower-cased, as bert-base-uncased), most frequent first.
    Rarer words fall back to sub-word pieces, so the tokenizer's splitting is exercised."""
    counts = collections.Counter()
    chars = set()
    for words, _ in sentences:
        for word in words:
            for piece in split_punctuation(word.lower()):
                counts[piece] += 1
                chars.update(piece)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += sorted(chars)
    vocab += ["##" + c for c in sorted(chars)]
    seen = set(vocab)
    for word, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if count >= min_count and word not in seen:
            vocab.append(word)
            seen.add(word)
    return vocab


def split_punctuation(word):
    """BERT's basic tokenizer splits punctuation off words ("Mr." -> "mr", ".")."""
    out, current = [], ""
    for ch in word:
        if not ch.isalnum():
            if current:
                out.append(current)
                current = ""
            out.append(ch)
        else:
            current += ch
    if current:
        out.append(current)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--min-count", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "demo")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    source = Source(rng)
    sentences = [source.sentence() for _ in range(args.sentences)]
    enumerator = {label: i for i, label in enumerate(LABELS)}
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "dataset.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["sentence_identifier", "sentence", "tagstr", "code_per_tag"])
        for i, (words, tags) in enumerate(sentences):
            writer.writerow([i, " ".join(words), " ".join(tags),
                             " ".join(str(enumerator[t]) for t in tags)])
    (args.out / "enumerator.json").write_text(json.dumps(enumerator, indent=2) + "\n")
    archetype = {str(i): label for label, i in enumerator.items()}
    (args.out / "archetype.json").write_text(json.dumps(archetype, indent=2) + "\n")
    vocab = build_vocab(sentences, args.min_count)
    (args.out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    hyperspace = {
        "continuous": {"learning_rate": [5e-4, 5e-3], "weight_decay": [0.0, 0.1]},
        "choice": {"weight_decay": [0.0, 0.01, 0.1], "per_device_train_batch_size": [16, 32]},
    }
    (args.out / "hyperspace.json").write_text(json.dumps(hyperspace, indent=2) + "\n")
    n_words = sum(len(w) for w, _ in sentences)
    print(f"{args.out}: {len(sentences)} sentences, {n_words} words, {len(vocab)} vocab entries")


if __name__ == "__main__":
    main()
