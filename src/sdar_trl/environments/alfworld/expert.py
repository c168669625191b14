"""The `alfworld-mini` expert: a search-order policy whose every choice can be read off the prompt.

The agent's step prompt shows only the task, the last two (observation, action) pairs, the current
observation and the admissible actions. The expert therefore follows rules that need nothing else:

1. **Search in list order.** Receptacles are always listed in one fixed order (the room
   description, and the `go to` actions, which are sorted the same way). From the middle of the
   room, go to the first one. Otherwise go to the receptacle listed right after the current one
   (after the last one, back to the first). The current receptacle is named by the current
   observation ("You arrive at cabinet 2. ...", "You open the cabinet 2. ...", "You move ... to
   the shelf 1.").
2. **Look inside.** Arriving at a closed receptacle while searching for the object: open it.
3. **Take the target when it is shown** ("On the countertop 1, you see a apple 1, ...") unless it
   already sits in the destination receptacle (the second object of `pick_two_obj_and_place`).
4. **Change its state** (clean / heat / cool tasks): right after picking it up, go to the first
   sinkbasin / microwave / fridge in the list (or use it at once if the object came from there),
   then `clean/heat/cool O with R`.
5. **Deliver**: go to the first receptacle of the destination type in the list, open it if it is
   closed, `move O to R`. For two objects, then continue the search after the destination (rule 1).
6. **Look tasks**: once holding the object, go from receptacle to receptacle in list order
   (without opening anything) until a `use <lamp>` action is admissible, and use it.

Away from its own trajectories (after a model's mistakes) the expert reads the true state, so it
still finishes: it puts down objects the task does not need and resumes the rules above.
"""

from __future__ import annotations

from .engine import AlfredEngine
from .world import APPLIANCE_VERB, LOOK_AT_OBJ_IN_LIGHT, OPENABLE, PICK_TWO_OBJ_AND_PLACE, type_of

__all__ = ["expert_command", "expert_decision", "expert_response"]

_ADJECTIVE = {"clean": "clean", "heat": "hot", "cool": "cool"}
_PAST = {"clean": "cleaned", "heat": "heated", "cool": "cooled"}


def _destination(engine: AlfredEngine) -> str | None:
    """Where the expert delivers: the first destination-type receptacle (or, off-policy, the fullest one)."""
    task = engine.task
    if task.destination_type is None:
        return None
    best, best_count = None, -1
    for name in engine.receptacles:
        if type_of(name) != task.destination_type:
            continue
        count = sum(1 for obj in engine.contents[name] if type_of(obj) == task.object_type and engine.satisfies(obj))
        if count > best_count:
            best, best_count = name, count
    return best


def _next_step(engine: AlfredEngine, goal: str) -> tuple[str, str]:
    """Go to the receptacle after the current one, with the reason stated from visible text."""
    here = engine.location
    target = engine.successor(here)
    if here is None:
        return f"go to {target}", (
            f"I am in the middle of the room. To {goal}, I check the receptacles in the order they are listed, "
            f"starting with the first one, {target}."
        )
    if engine.order[here] == len(engine.receptacles) - 1:
        return f"go to {target}", (
            f"The {here} is the last receptacle in the list, so I go back to the first one, {target}, to {goal}."
        )
    return f"go to {target}", f"The next receptacle in the list after {here} is {target}, so I go there to {goal}."


def _search(engine: AlfredEngine, destination: str | None) -> tuple[str, str]:
    """Hands empty: look for an object of the target type."""
    task = engine.task
    kind = task.object_type
    here = engine.location
    if task.task_type == PICK_TWO_OBJ_AND_PLACE and destination is not None:
        placed = [obj for obj in engine.contents[destination] if type_of(obj) == kind]
        goal = f"find a second {kind}" if placed else f"find a {kind}"
    else:
        goal = f"find a {kind}"
    if here is not None and type_of(here) in OPENABLE and here not in engine.opened:
        return f"open {here}", f"The {here} is closed. I open it to see whether there is a {kind} inside."
    found = [obj for obj in engine.visible_objects() if type_of(obj) == kind]
    if found and here != destination:
        obj = found[0]
        return f"take {obj} from {here}", f"I can see {obj} at {here}. I take it; {_plan_after_taking(engine)}"
    command, reason = _next_step(engine, goal)
    if here is None:
        return command, reason
    if engine.last_kind == "move" and here == destination:
        return command, f"I have put a {kind} in {here} and still need a second one. {reason}"
    if found:
        return command, f"The {kind} at {here} is already in place and I need another one. {reason}"
    return command, f"There is no {kind} at {here}. {reason}"


def _plan_after_taking(engine: AlfredEngine) -> str:
    task = engine.task
    if task.task_type == LOOK_AT_OBJ_IN_LIGHT:
        return f"then I need to find a {task.lamp_type} and turn it on."
    if task.appliance_type is not None:
        verb = APPLIANCE_VERB[task.appliance_type]
        return f"then I will {verb} it with the {task.appliance_type}."
    return f"then I will put it in the {task.destination_type}."


def _deliver(engine: AlfredEngine, held: str, destination: str) -> tuple[str, str]:
    """Holding a finished target: bring it to the destination."""
    task = engine.task
    here = engine.location
    verb = APPLIANCE_VERB.get(task.appliance_type or "")
    state = f"the {_ADJECTIVE[verb]} {held}" if verb else held
    if here == destination:
        if type_of(here) in OPENABLE and here not in engine.opened:
            return f"open {here}", f"I am at {here} with {state}, but it is closed. I open it."
        if task.task_type == PICK_TWO_OBJ_AND_PLACE and not any(
            type_of(obj) == task.object_type for obj in engine.contents[here]
        ):
            return f"move {held} to {here}", f"I am at {here} with {state}. I put it here; then I need a second one."
        return f"move {held} to {here}", f"I am at {here} with {state}. I put it here to finish the task."
    if engine.last_kind in ("heat", "cool", "clean"):
        return f"go to {destination}", (
            f"I have {_PAST[engine.last_kind]} {held}. It must go in a {task.destination_type}; the first "
            f"{task.destination_type} in the list is {destination}, so I go there."
        )
    return f"go to {destination}", (
        f"I am holding {held}. It must go in a {task.destination_type}; the first {task.destination_type} in the "
        f"list is {destination}, so I go there."
    )


def _change_state(engine: AlfredEngine, held: str) -> tuple[str, str]:
    """Holding the target before its state change: go to the appliance and use it."""
    appliance_type = engine.task.appliance_type or ""
    verb = APPLIANCE_VERB[appliance_type]
    here = engine.location
    if here is not None and type_of(here) == appliance_type:
        return f"{verb} {held} with {here}", (
            f"I am at {here} holding {held}, and the task needs it {_ADJECTIVE[verb]}. I {verb} it here."
        )
    appliance = engine.first_of_type(appliance_type)
    return f"go to {appliance}", (
        f"I am holding {held} and the task needs it {_ADJECTIVE[verb]}. The first {appliance_type} in the list is "
        f"{appliance}, so I go there to {verb} it."
    )


def _find_lamp(engine: AlfredEngine, held: str) -> tuple[str, str]:
    lamp_type = engine.task.lamp_type
    here = engine.location
    lamps = [obj for obj in engine.contents.get(here or "", []) if type_of(obj) == lamp_type]
    if lamps:
        return f"use {lamps[0]}", (
            f"I am holding {held} and there is {lamps[0]} at {here}. I turn it on to look at {held} under it."
        )
    command, reason = _next_step(engine, f"find a {lamp_type}")
    if here is None:
        return command, f"I am holding {held} and need a {lamp_type}. {reason}"
    return command, f"I am holding {held} and I see no {lamp_type} at {here}. {reason}"


def _put_down(engine: AlfredEngine, held: str) -> tuple[str, str]:
    """Off-policy: free the hands of an object the task does not need."""
    here = engine.location
    if here is not None:
        if type_of(here) in OPENABLE and here not in engine.opened:
            return f"open {here}", f"I am holding {held}, which the task does not need. I open {here} to put it down."
        if engine.can_hold(here, held):
            return f"move {held} to {here}", f"I am holding {held}, which the task does not need. I put it down here."
    command, reason = _next_step(engine, f"find a place for {held}")
    return command, f"I am holding {held}, which the task does not need, and cannot put it down here. {reason}"


def expert_decision(engine: AlfredEngine) -> tuple[str, str]:
    """The expert's next command and a one-paragraph reason that cites only what the prompt shows."""
    task = engine.task
    held = engine.holding
    destination = _destination(engine)
    if held is None:
        return _search(engine, destination)
    if type_of(held) != task.object_type:
        return _put_down(engine, held)
    if task.task_type == LOOK_AT_OBJ_IN_LIGHT:
        return _find_lamp(engine, held)
    if not engine.satisfies(held):
        return _change_state(engine, held)
    return _deliver(engine, held, destination or "")


def expert_command(engine: AlfredEngine) -> str:
    """The expert's next command, exactly as `AlfredEngine.execute` accepts it."""
    return expert_decision(engine)[0]


def expert_response(engine: AlfredEngine) -> str:
    """The expert's next move as a model response: `<think>reason</think><action>command</action>`."""
    command, reason = expert_decision(engine)
    return f"<think>{reason}</think><action>{command}</action>"
