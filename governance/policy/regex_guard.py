"""Static guard against regular expressions that backtrack catastrophically (ReDoS).

Policy regexes are written by an organisation's admins but run against argument values that an
agent controls, on the proxy's hot path, with Python's backtracking `re` engine. A pattern is
accepted only if a conservative static check over its parse tree finds none of the shapes that
make backtracking super-quadratic (OWASP, "Regular expression Denial of Service - ReDoS"):

- nested quantifiers: a repeat whose body holds a variable repeat or an ambiguous alternation,
  as in `(a+)+`, `(a*)*`, `(a|aa)+`, `(x|x?)*`, `(a?){25}`, unless every iteration starts or
  ends with a character the inner part cannot match (`(\\.\\w+)*` is fine);
- two variable parts of one sequence that can eat the same text with nothing in between to
  stop the first, as in `.*a.*b`, `\\d+\\d*` or `a?a?a?` (polynomial or exponential: `.*a.*b`
  takes 12 s on 4 KiB);
- backreferences and conditional groups (matching them is NP-hard in general).

What remains is at worst quadratic in the subject length, because `search` retries from every
position: the engine caps the subject (`MAX_REGEX_SUBJECT`), and bench/bench_policy.py records
the worst case of some accepted patterns at that cap (up to a few hundred ms for a repeated
group such as `(ab|a)*c`). Only a linear-time engine (RE2) would remove that last factor. The
check errs on the side of refusal, and its messages say what to rewrite.

It reads the tree of CPython's own regex parser (`re._parser`, Python 3.11), so what is checked
is exactly what `re` will run.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Iterator
from typing import Any

import re2

MAX_REGEX_LENGTH = 256
# Cap on the characters of an argument value a regex condition examines (see module docstring).
MAX_REGEX_SUBJECT = 4096

_parser: Any = importlib.import_module("re._parser")
_c: Any = importlib.import_module("re._constants")

_REPEATS = frozenset({_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT})
_SINGLE = frozenset({_c.LITERAL, _c.NOT_LITERAL, _c.ANY, _c.IN})
_ZERO_WIDTH = frozenset({_c.AT, _c.ASSERT, _c.ASSERT_NOT})

# Characters on which character sets are compared: Latin-1 plus a few from other scripts and
# Unicode spaces/digits; each pattern adds its own literals and range ends (see `_alphabet`).
_BASE_ALPHABET = "".join(chr(i) for i in range(256)) + "ĀŁſΩЖא٣中가\u2003\u3000\U0001d7d8\U0001f600"
_CATEGORIES = {
    _c.CATEGORY_DIGIT: re.compile(r"\d"),
    _c.CATEGORY_NOT_DIGIT: re.compile(r"\D"),
    _c.CATEGORY_SPACE: re.compile(r"\s"),
    _c.CATEGORY_NOT_SPACE: re.compile(r"\S"),
    _c.CATEGORY_WORD: re.compile(r"\w"),
    _c.CATEGORY_NOT_WORD: re.compile(r"\W"),
}


class UnsafeRegex(ValueError):
    """The pattern is invalid or could backtrack catastrophically; the message says why."""


@functools.lru_cache(maxsize=1024)
def check_regex(pattern: str) -> re.Pattern[str]:
    """Compile `pattern` or raise `UnsafeRegex` with a message meant for the policy author.

    Cached: validating 10,000 rules that share a few patterns costs a few checks, not 10,000.
    """
    if len(pattern) > MAX_REGEX_LENGTH:
        raise UnsafeRegex(f"regex is longer than {MAX_REGEX_LENGTH} characters")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise UnsafeRegex(f"invalid regex: {exc}") from exc
    except (RecursionError, OverflowError) as exc:
        raise UnsafeRegex("invalid regex: too deeply nested") from exc
    tree = _parser.parse(pattern)
    _Checker(list(tree), tree.state.flags).check(list(tree))
    compile_linear(pattern)
    return compiled


@functools.lru_cache(maxsize=4096)
def compile_linear(pattern: str) -> Any:
    """The pattern for RE2, which matches in time linear in the subject whatever the pattern.

    The static check above refuses the classic catastrophic shapes, but CPython's engine still
    retries from every position (quadratic on crafted input); evaluation therefore runs on RE2.
    A pattern RE2 cannot compile (lookaround, backreferences) is refused at save time.
    """
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options=options)
    except re2.error as exc:
        raise UnsafeRegex(f"regex is not supported by the linear-time matcher: {exc}") from exc


class _Checker:
    def __init__(self, items: list[tuple[Any, Any]], flags: int) -> None:
        self.alphabet = _alphabet(items)
        self.everything = (1 << len(self.alphabet)) - 1
        # A scoped (?i:...) anywhere makes the whole pattern case-insensitive here: coarser,
        # never laxer.
        self.ignorecase = bool(flags & re.IGNORECASE) or any(
            op is _c.SUBPATTERN and av[1] & re.IGNORECASE for op, av in _walk(items)
        )
        self._memo: dict[tuple[Any, str], int] = {}

    # -- character sets as bitmasks over the alphabet -------------------------------------------

    def single(self, op: Any, av: Any) -> int:
        """Bitmask of the characters one single-character item can match."""
        key = (op, repr(av))
        mask = self._memo.get(key)
        if mask is None:
            if op is _c.ANY:
                mask = self.everything
            elif op is _c.LITERAL or op is _c.NOT_LITERAL:
                mask = self._mask(lambda ch: self._same(ch, av))
                mask = self.everything & ~mask if op is _c.NOT_LITERAL else mask
            else:
                mask = self._mask(lambda ch: self._in_set(ch, av))
            self._memo[key] = mask
        return mask

    def _mask(self, test: Any) -> int:
        mask = 0
        for i, ch in enumerate(self.alphabet):
            if test(ch):
                mask |= 1 << i
        return mask

    def _same(self, ch: str, code: int) -> bool:
        return any(ord(v) == code for v in self._variants(ch))

    def _variants(self, ch: str) -> list[str]:
        if not self.ignorecase:
            return [ch]
        return [v for v in (ch, ch.lower(), ch.upper(), ch.casefold()) if len(v) == 1]

    def _in_set(self, ch: str, items: list[tuple[Any, Any]]) -> bool:
        negate = False
        hit = False
        for op, av in items:
            if op is _c.NEGATE:
                negate = True
            elif op is _c.LITERAL:
                hit = hit or self._same(ch, av)
            elif op is _c.RANGE or op is _c.RANGE_UNI_IGNORE:
                lo, hi = av
                hit = hit or any(lo <= ord(v) <= hi for v in self._variants(ch))
            elif op is _c.CATEGORY:
                category = _CATEGORIES.get(av)
                hit = hit or category is None or category.match(ch) is not None
            else:  # anything exotic: assume it can match (conservative)
                hit = True
        return hit != negate

    def chars(self, items: list[tuple[Any, Any]]) -> int:
        """Every character some single-character item inside `items` can consume."""
        mask = 0
        for op, av in _walk(items):
            if op in _SINGLE:
                mask |= self.single(op, av)
        return mask

    # -- the checks ------------------------------------------------------------------------------

    def check(self, items: list[tuple[Any, Any]]) -> None:
        for op, av in _walk(items):
            if op is _c.GROUPREF or op is _c.GROUPREF_EXISTS:
                raise UnsafeRegex("backreferences and conditional groups are not allowed")
            if op in _REPEATS and av[1] > 1:
                self._check_nested(list(av[2]))
        self._check_sequence(items)

    def _check_nested(self, body: list[tuple[Any, Any]]) -> None:
        """A repeated body holding something variable needs an unambiguous start or end."""
        inner = self._variable_chars(body)
        if not inner:
            return
        flat = _flatten(body)
        edges = [flat[0], flat[-1]] if flat else []
        if any(op in _SINGLE and not self.single(op, av) & inner for op, av in edges):
            return
        raise UnsafeRegex(
            "nested quantifiers or a repeated alternation, as in (a+)+ or (a|aa)*, can "
            "backtrack catastrophically; make each repetition start or end with a character "
            "the inner part cannot match"
        )

    def _check_sequence(self, items: list[tuple[Any, Any]]) -> None:
        """Two variable parts of one sequence need a stopper between them (`a+x?a+` fails)."""
        pending: list[int] = []  # chars of variable parts that nothing has stopped yet
        for op, av in _flatten(items):
            if op in _SINGLE:
                mask = self.single(op, av)
                pending = [p for p in pending if p & mask]
            elif op in _ZERO_WIDTH:
                if op is not _c.AT:
                    self._check_sequence(list(av[1]))
            else:
                variable = self._variable_chars([(op, av)])
                if variable and any(p & self._entry(op, av) for p in pending):
                    raise UnsafeRegex(
                        "two quantifiers can match the same text (as in .*a.*b, \\d+\\d* or "
                        "a?a?), which takes polynomial or exponential time; drop a leading or "
                        "trailing .* (regex conditions search anywhere in the value) or put a "
                        "character between them that the first cannot match"
                    )
                if variable:
                    pending.append(variable)
                for nested in _children(op, av):
                    self._check_sequence(nested)

    def _ambiguous(self, op: Any, av: Any) -> bool:
        """A repeat of variable count, or an alternation whose branches can start alike."""
        if op in _REPEATS:
            return bool(av[0] != av[1])
        if op is _c.BRANCH:
            seen = 0
            for alternative in av[1]:
                flat = _flatten(list(alternative))
                if not flat or flat[0][0] not in _SINGLE:
                    return True
                mask = self.single(*flat[0])
                if mask & seen:
                    return True
                seen |= mask
        return False

    def _variable_chars(self, items: list[tuple[Any, Any]]) -> int:
        """Chars that the ambiguous parts inside `items` can consume (0: none)."""
        mask = 0
        for op, av in _walk(items):
            if self._ambiguous(op, av):
                mask |= self.chars([(op, av)])
        return mask

    def _entry(self, op: Any, av: Any) -> int:
        """Chars the item starts with when it consumes anything (everything if unknown)."""
        if op in _REPEATS:
            return self._first([list(av[2])])
        if op is _c.BRANCH:
            return self._first([list(alternative) for alternative in av[1]])
        return self.everything

    def _first(self, sequences: list[list[tuple[Any, Any]]]) -> int:
        mask = 0
        for sequence in sequences:
            flat = _flatten(sequence)
            if not flat or flat[0][0] not in _SINGLE:
                return self.everything
            mask |= self.single(*flat[0])
        return mask


def _alphabet(items: list[tuple[Any, Any]]) -> str:
    """The base alphabet plus every literal and range end the pattern names, in both cases."""
    codes: set[int] = set()
    for op, av in _walk(items):
        if op is _c.LITERAL or op is _c.NOT_LITERAL:
            codes.add(av)
        elif op is _c.IN:
            for item_op, item_av in av:
                if item_op is _c.LITERAL:
                    codes.add(item_av)
                elif item_op is _c.RANGE:
                    codes.update(item_av)
    extra = {chr(code) for code in codes}
    extra |= {v for ch in extra for v in (ch.lower(), ch.upper()) if len(v) == 1}
    return _BASE_ALPHABET + "".join(sorted(extra - set(_BASE_ALPHABET)))


def _children(op: Any, av: Any) -> list[list[tuple[Any, Any]]]:
    if op in _REPEATS:
        return [list(av[2])]
    if op is _c.SUBPATTERN:
        return [list(av[3])]
    if op is _c.BRANCH:
        return [list(alternative) for alternative in av[1]]
    if op is _c.ASSERT or op is _c.ASSERT_NOT:
        return [list(av[1])]
    if op is _c.ATOMIC_GROUP:
        return [list(av)]
    if op is _c.GROUPREF_EXISTS:
        return [list(part) for part in av[1:] if part is not None]
    return []


def _walk(items: list[tuple[Any, Any]]) -> Iterator[tuple[Any, Any]]:
    for op, av in items:
        yield op, av
        for child in _children(op, av):
            yield from _walk(child)


def _flatten(items: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Inline plain groups and fixed repeats so one sequence reads left to right."""
    out: list[tuple[Any, Any]] = []
    for op, av in items:
        if op is _c.SUBPATTERN:
            out.extend(_flatten(list(av[3])))
        elif op is _c.ATOMIC_GROUP:
            out.extend(_flatten(list(av)))
        elif op in _REPEATS and av[0] == av[1] and av[0] >= 1:
            # x{3} is x x x; two copies expose any ambiguity across the iteration boundary.
            body = _flatten(list(av[2]))
            out.extend(body * min(av[0], 2))
        else:
            out.append((op, av))
    return out
