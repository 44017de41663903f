#!/usr/bin/env python3
"""Checks that VaultCore's folders depend on each other only downwards, in the order that
Sources/VaultCore/README.md gives, and that nothing outside Catalog/ imports GRDB.

A folder depends on another when one of its files names a type, function or constant
declared at the top level of that folder, or calls a method that only that folder declares
(declarations are found by a plain scan: this is a guard for the layering, not a compiler). Exits 1, naming each reference that goes up or
sideways, so `make lint` fails on it."""
import os, re, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Sources", "VaultCore")
# Lowest first: a folder may use the folders before it, never one after it.
LAYERS = ["Support", "Store", "Catalog", "Repository", "Read", "Maintenance", "Backup", "Policy", "Views"]
RANK = {folder: i for i, folder in enumerate(LAYERS)}

DECLARATION = re.compile(r"^(?:public |internal |fileprivate |private |final |@\w+ )*"
                         r"(?:struct|class|enum|protocol|actor|typealias|func|let|var) +([A-Za-z_]\w*)", re.M)
EXTENSION = re.compile(r"^(?:public |internal )?extension +([A-Za-z_][\w.]*)", re.M)
COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
STRING = re.compile(r'"(?:\\.|[^"\\\n])*"')


def source(path):
    with open(path, encoding="utf-8") as f:
        return STRING.sub('""', COMMENT.sub("", f.read()))


def main():
    files = {}
    for folder in sorted(os.listdir(ROOT)):
        directory = os.path.join(ROOT, folder)
        if not os.path.isdir(directory):
            continue
        if folder not in RANK:
            print(f"check-layers: Sources/VaultCore/{folder} is in no layer; add it to LAYERS and the README")
            return 1
        for name in sorted(os.listdir(directory)):
            if name.endswith(".swift"):
                files[os.path.join(folder, name)] = source(os.path.join(directory, name))
    owner = {}
    for path, text in files.items():
        folder = path.split("/")[0]
        # Only top-level names: indented declarations are members.
        for name in DECLARATION.findall(text):
            owner.setdefault(name, set()).add(folder)
    # Methods one folder adds to another folder's type (`extension Repository` in
    # Maintenance/, say): a call to one is a use of the folder that adds it, when no other
    # declaration anywhere has its name.
    declared = {}
    for text in files.values():
        for name in re.findall(r"^[ \t]+(?:[\w@]+ )*(?:func|var|let|case) +([A-Za-z_]\w*)", text, re.M):
            declared[name] = declared.get(name, 0) + 1
    members = {}
    for path, text in files.items():
        folder = path.split("/")[0]
        for block in re.split(r"^(?=\S)", text, flags=re.M):
            extended = EXTENSION.match(block)
            if not extended or folder in owner.get(extended.group(1).split(".")[0], {folder}):
                continue
            for name in re.findall(r"^    (?:[\w@]+ )*func +([A-Za-z_]\w*)", block, re.M):
                if declared.get(name) == 1 and name not in owner:
                    members[name] = {folder}
    problems = []
    for path, text in files.items():
        folder = path.split("/")[0]
        if re.search(r"^\s*(?:\w+ )?import GRDB", text, re.M) and folder != "Catalog":
            problems.append(f"{path} imports GRDB: only Catalog/ may")
        words = set(re.findall(r"\b[A-Za-z_]\w*\b", text))
        extended = set(m.split(".")[0] for m in EXTENSION.findall(text))
        called = set(re.findall(r"\.([A-Za-z_]\w*)\b", text)) & set(members)
        for word in sorted(words | extended | called):
            folders = owner.get(word, set()) or (members.get(word, set()) if word in called else set())
            if folder in folders or not folders:
                continue
            for other in sorted(folders):
                if RANK[other] >= RANK[folder]:
                    problems.append(f"{path} uses {word} of {other}/ (layer {RANK[other]}), above or beside {folder}/ (layer {RANK[folder]})")
    for problem in problems:
        print(problem)
    print(f"check-layers: {len(files)} files, {len(problems)} references against the layers")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
