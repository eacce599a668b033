"""Pipeline stages runnable as commands (`ttstrain <stage>`); each takes a config dataclass."""
