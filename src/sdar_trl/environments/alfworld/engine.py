"""The `alfworld-mini` game engine: state, ALFWorld's command grammar, admissibility and feedback text.

The rules follow ALFWorld's PDDL domain (`alfred.pddl`) and the sentences its text grammar
(`alfred.twl2`) produces:

- `go to R`: R is another receptacle of the room. "You arrive at R. " + what R shows ("On the R, you
  see a X, and a Y." / "The R is closed." / "The R is open. In it, you see nothing.").
- `open R` / `close R`: at R, R openable and closed / open. "You open the R. The R is open. In it, you
  see ..." / "You close the R."
- `take O from R`: at R, R open or not openable, O in R, O not a lamp, hands empty. "You pick up the O
  from the R."
- `move O to R` (also `put O in R`, `put O on R`, `put O in/on R`): holding O, at R, R open or not
  openable, R's type can hold O's type. "You move the O to the R."
- `heat O with R` / `cool O with R` / `clean O with R`: holding a heatable / coolable / cleanable O at
  a microwave / fridge / sinkbasin R (it may be closed). "You heat the O using the R."
- `use L`: at the receptacle holding lamp L. "You turn on the L."
- `examine R` / `examine O`: at R / O visible in the open receptacle here, or held. R's contents, or
  the object's state ("This is a hot apple 1.", "There's nothing special about apple 1.").
- `inventory`, `look`: always. "You are carrying: a O." / "You are facing the R. Next to it, you see
  nothing." (in the middle of the room: the room description).

Anything else (unknown words, wrong names, unmet preconditions) gets "Nothing happens." and leaves
the state untouched. A command is accepted exactly when it is in `admissible_actions()`.
"""

from __future__ import annotations

import re

from .world import (
    APPLIANCE_VERB,
    CLEANABLE,
    COOLABLE,
    HEATABLE,
    LAMP_TYPES,
    LOOK_AT_OBJ_IN_LIGHT,
    OBJECT_PLACES,
    OPENABLE,
    PICK_TWO_OBJ_AND_PLACE,
    WorldSpec,
    natural_key,
    type_of,
)

__all__ = ["NOTHING_HAPPENS", "AlfredEngine", "render_initial_observation", "render_list"]

NOTHING_HAPPENS = "Nothing happens."
WELCOME = "-= Welcome to TextWorld, ALFRED! =-"
_PUT = re.compile(r"^put (.+?) (?:in/on|into|onto|in|on) (.+)$")
_PROPERTY = {"heat": HEATABLE, "cool": COOLABLE, "clean": CLEANABLE}


def render_list(names: list[str]) -> str:
    """ALFWorld's list text: "a X", "a X, and a Y", "a X, a Y, and a Z", or "nothing"."""
    items = [f"a {name}" for name in names]
    if not items:
        return "nothing"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + ", and " + items[-1]


def render_room(receptacles: list[str] | tuple[str, ...]) -> str:
    """The middle-of-the-room description listing every receptacle in order."""
    return f"You are in the middle of a room. Looking quickly around you, you see {render_list(list(receptacles))}."


def render_initial_observation(world: WorldSpec) -> str:
    """The first observation: welcome banner, room description and the task."""
    return f"{WELCOME}\n\n{render_room(world.receptacles)}\n\nYour task is to: {world.task.sentence}"


class AlfredEngine:
    """Mutable game state of one `WorldSpec` episode (no step counting; see `AlfWorldMiniEnv`).

    Attributes:
        world: the spec the episode was built from.
        location: the receptacle the agent stands at, or None in the middle of the room.
        holding: the object in the agent's hands, or None.
        won: whether the goal holds (checked after every accepted command).
        last_kind: the verb of the last accepted command ("" at the start), e.g. "go", "move".
    """

    def __init__(self, world: WorldSpec) -> None:
        self.world = world
        self.task = world.task
        self.receptacles: tuple[str, ...] = world.receptacles
        self.order: dict[str, int] = {name: i for i, name in enumerate(world.receptacles)}
        self.contents: dict[str, list[str]] = {name: [] for name in world.receptacles}
        self.where: dict[str, str | None] = {}
        for obj, receptacle in world.placements:
            self.contents[receptacle].append(obj)
            self.where[obj] = receptacle
        for names in self.contents.values():
            names.sort(key=natural_key)
        self.opened: set[str] = set()
        self.hot: set[str] = set()
        self.cool: set[str] = set()
        self.clean: set[str] = set()
        self.toggled: set[str] = set()
        self.location: str | None = None
        self.holding: str | None = None
        self.won = False
        self.last_kind = ""
        self._actions: dict[str, tuple[str, ...]] | None = None
        self._goto = {name: [f"go to {other}" for other in world.receptacles if other != name] for name in self.order}
        self._goto_all = [f"go to {name}" for name in world.receptacles]

    # -- queries -------------------------------------------------------------------------------------
    def is_open(self, receptacle: str) -> bool:
        """True when the inside of `receptacle` is visible (not openable, or opened)."""
        return type_of(receptacle) not in OPENABLE or receptacle in self.opened

    def visible_objects(self) -> list[str]:
        """Objects in the receptacle the agent stands at, if it is open (listing order)."""
        if self.location is None or not self.is_open(self.location):
            return []
        return self.contents[self.location]

    def first_of_type(self, kind: str) -> str | None:
        """The first receptacle of type `kind` in the room's listing order, or None."""
        return next((name for name in self.receptacles if type_of(name) == kind), None)

    def successor(self, receptacle: str | None) -> str:
        """The receptacle listed after `receptacle` (wrapping round); the first one from the middle of the room."""
        if receptacle is None:
            return self.receptacles[0]
        return self.receptacles[(self.order[receptacle] + 1) % len(self.receptacles)]

    def can_hold(self, receptacle: str, obj: str) -> bool:
        return type_of(receptacle) in OBJECT_PLACES.get(type_of(obj), ())

    def has_property(self, obj: str, verb: str) -> bool:
        """Whether `obj` is hot / cool / clean (`verb` is "heat", "cool" or "clean")."""
        return obj in {"heat": self.hot, "cool": self.cool, "clean": self.clean}[verb]

    # -- admissible commands -------------------------------------------------------------------------
    def valid_actions(self) -> dict[str, tuple[str, ...]]:
        """Command text -> structured action, for every command accepted in the current state (cached)."""
        if self._actions is not None:
            return self._actions
        actions: dict[str, tuple[str, ...]] = {"inventory": ("inventory",), "look": ("look",)}
        here = self.location
        gotos = self._goto_all if here is None else self._goto[here]
        for command in gotos:
            actions[command] = ("go", command[6:])
        held = self.holding
        if held is not None:
            actions[f"examine {held}"] = ("examine", held)
        if here is not None:
            actions[f"examine {here}"] = ("examine", here)
            kind = type_of(here)
            if kind in OPENABLE:
                if here in self.opened:
                    actions[f"close {here}"] = ("close", here)
                else:
                    actions[f"open {here}"] = ("open", here)
            visible = self.is_open(here)
            for obj in self.contents[here]:
                obj_kind = type_of(obj)
                if obj_kind in LAMP_TYPES:
                    actions[f"use {obj}"] = ("use", obj)
                if visible:
                    actions[f"examine {obj}"] = ("examine", obj)
                    if held is None and obj_kind not in LAMP_TYPES:
                        actions[f"take {obj} from {here}"] = ("take", obj, here)
            if held is not None:
                held_kind = type_of(held)
                if visible and kind in OBJECT_PLACES.get(held_kind, ()):
                    actions[f"move {held} to {here}"] = ("move", held, here)
                verb = APPLIANCE_VERB.get(kind)
                if verb is not None and held_kind in _PROPERTY[verb]:
                    actions[f"{verb} {held} with {here}"] = (verb, held, here)
        self._actions = actions
        return actions

    def admissible_actions(self) -> list[str]:
        """The accepted commands, sorted with numbers by value (so `go to` follows the room order)."""
        return sorted(self.valid_actions(), key=natural_key)

    # -- acting --------------------------------------------------------------------------------------
    @staticmethod
    def normalize(command: str) -> str:
        """Lower-case, single-spaced; `put O in/on R` (ALFWorld < 0.4 wording) becomes `move O to R`."""
        text = " ".join(command.lower().split())
        match = _PUT.match(text)
        if match is not None:
            text = f"move {match.group(1)} to {match.group(2)}"
        return text

    def execute(self, command: str) -> tuple[str, bool]:
        """Apply `command`; returns `(feedback, accepted)`. Unaccepted commands change nothing."""
        action = self.valid_actions().get(self.normalize(command)) if isinstance(command, str) else None
        if action is None:
            return NOTHING_HAPPENS, False
        feedback = self._apply(action)
        self._actions = None
        self.last_kind = action[0]
        self.won = self.won or self._goal_holds()
        return feedback, True

    def _apply(self, action: tuple[str, ...]) -> str:
        kind = action[0]
        if kind == "go":
            self.location = action[1]
            return f"You arrive at {action[1]}. {self.describe(action[1])}"
        if kind == "open":
            self.opened.add(action[1])
            return f"You open the {action[1]}. {self.describe(action[1])}"
        if kind == "close":
            self.opened.discard(action[1])
            return f"You close the {action[1]}."
        if kind == "take":
            _, obj, receptacle = action
            self.contents[receptacle].remove(obj)
            self.where[obj] = None
            self.holding = obj
            return f"You pick up the {obj} from the {receptacle}."
        if kind == "move":
            _, obj, receptacle = action
            self.contents[receptacle].append(obj)
            self.contents[receptacle].sort(key=natural_key)
            self.where[obj] = receptacle
            self.holding = None
            return f"You move the {obj} to the {receptacle}."
        if kind in ("heat", "cool", "clean"):
            _, obj, receptacle = action
            if kind == "heat":
                self.hot.add(obj)
                self.cool.discard(obj)
            elif kind == "cool":
                self.cool.add(obj)
                self.hot.discard(obj)
            else:
                self.clean.add(obj)
            return f"You {kind} the {obj} using the {receptacle}."
        if kind == "use":
            self.toggled.add(action[1])
            return f"You turn on the {action[1]}."
        if kind == "examine":
            target = action[1]
            return self.describe(target) if target in self.contents else self._describe_object(target)
        if kind == "inventory":
            if self.holding is None:
                return "You are not carrying anything."
            return f"You are carrying: a {self.holding}."
        # look
        if self.location is None:
            return render_room(self.receptacles)
        return f"You are facing the {self.location}. Next to it, you see nothing."

    def describe(self, receptacle: str) -> str:
        """What a receptacle shows: its contents, or that it is closed."""
        if type_of(receptacle) in OPENABLE:
            if receptacle not in self.opened:
                return f"The {receptacle} is closed."
            return f"The {receptacle} is open. In it, you see {render_list(self.contents[receptacle])}."
        return f"On the {receptacle}, you see {render_list(self.contents[receptacle])}."

    def _describe_object(self, obj: str) -> str:
        if type_of(obj) in LAMP_TYPES:
            return f"This {obj} is {'on' if obj in self.toggled else 'off'}."
        states = [name for name, present in (("hot", obj in self.hot), ("cool", obj in self.cool)) if present]
        if obj in self.clean:
            return f"This is a {states[0]} and clean {obj}." if states else f"This is a clean {obj}."
        if obj in self.hot:
            return f"This is a hot {obj}."
        if obj in self.cool:
            return f"This is a cold {obj}."
        return f"There's nothing special about {obj}."

    # -- goal ----------------------------------------------------------------------------------------
    def satisfies(self, obj: str) -> bool:
        """Whether `obj` has the state change the task asks for (always True for tasks without one)."""
        appliance = self.task.appliance_type
        return appliance is None or self.has_property(obj, APPLIANCE_VERB[appliance])

    def _goal_holds(self) -> bool:
        task = self.task
        if task.task_type == LOOK_AT_OBJ_IN_LIGHT:
            if self.holding is None or type_of(self.holding) != task.object_type or self.location is None:
                return False
            return any(type_of(obj) == task.lamp_type and obj in self.toggled for obj in self.contents[self.location])
        needed = 2 if task.task_type == PICK_TWO_OBJ_AND_PLACE else 1
        for receptacle, objs in self.contents.items():
            if type_of(receptacle) != task.destination_type:
                continue
            done = sum(1 for obj in objs if type_of(obj) == task.object_type and self.satisfies(obj))
            if done >= needed:
                return True
        return False
