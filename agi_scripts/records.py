"""Immutable records: collections.namedtuple's interface, defined without its exec().

A per-call script defines ten of them (the settings, Script, Outcome) on every call, and
namedtuple() compiles generated source for each: about 0.1 ms apiece, 1 ms per call.
record() builds the same kind of class from a plain __new__ and C-level itemgetters,
about five times cheaper; instances construct, compare, hash, repr, pickle and
_replace() as namedtuple's do.
"""
import sys
from operator import itemgetter


def record(name: str, fields: str, defaults: tuple = ()) -> type:
    """A tuple subclass with these space-separated fields; the last len(defaults) are optional."""
    names = tuple(fields.split())
    index = {field: position for position, field in enumerate(names)}
    first_optional = len(names) - len(defaults)

    def __new__(cls, *args, **kwargs):
        if len(args) > len(names):
            raise TypeError("%s() takes %d arguments, %d given" % (name, len(names), len(args)))
        values = list(args)
        for position in range(len(args), len(names)):
            field = names[position]
            if field in kwargs:
                values.append(kwargs.pop(field))
            elif position >= first_optional:
                values.append(defaults[position - first_optional])
            else:
                raise TypeError("%s() missing argument %r" % (name, field))
        if kwargs:
            raise TypeError("%s() got an unexpected or repeated argument: %s" % (name, ", ".join(kwargs)))
        return tuple.__new__(cls, values)

    def _replace(self, **changes):
        values = list(self)
        for field, value in changes.items():
            if field not in index:
                raise ValueError("%s has no field %r" % (name, field))
            values[index[field]] = value
        return tuple.__new__(type(self), values)

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join("%s=%r" % pair for pair in zip(names, self)))

    namespace = {"__slots__": (), "__new__": __new__, "_replace": _replace, "__repr__": __repr__,
                 "__getnewargs__": lambda self: tuple(self), "_fields": names,
                 "__module__": sys._getframe(1).f_globals.get("__name__", "__main__")}
    namespace.update((field, property(itemgetter(position), doc="field %d" % position))
                     for position, field in enumerate(names))
    return type(name, (tuple,), namespace)
