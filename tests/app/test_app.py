"""App registration: components, state binding, manifests, argument and output checks."""

from __future__ import annotations

import functools
import os
import sys
from typing import Any

import pytest

import tether
from tether import App, AppError
from tether.app import Function
from tether.app.state import State
from tether.errors import BadValue

# -- registration ------------------------------------------------------------


def test_add_registers_the_function_under_its_own_name() -> None:
    app = App()

    def greet(name):
        return f"hi {name}"

    function = app.add(greet, ["text"], ["text"])
    assert isinstance(function, Function)
    assert app.functions == {"greet": function}
    assert function.name == "greet"
    assert function.fn is greet
    assert function.inputs == ("text",)
    assert function.outputs == ("text",)


def test_add_uses_an_explicit_name_over_the_function_name() -> None:
    app = App()
    function = app.add(lambda s: s, "text", "text", name="echo")
    assert function.name == "echo"
    assert list(app.functions) == ["echo"]


def test_function_decorator_registers_and_returns_the_function_unchanged() -> None:
    app = App()

    def shout(s):
        return s.upper()

    assert app.function(inputs="text", outputs="text")(shout) is shout
    assert app.functions["shout"].fn is shout


def test_function_decorator_passes_the_name_on() -> None:
    app = App()

    @app.function(inputs=["number"], outputs=["number"], name="double")
    def twice(x):
        return 2 * x

    assert list(app.functions) == ["double"]
    assert app.functions["double"].fn is twice


def test_a_single_component_string_stands_for_a_one_element_list() -> None:
    app = App()
    single = app.add(lambda x: x, "number", "text", name="single")
    listed = app.add(lambda x: x, ["number"], ["text"], name="listed")
    assert single.inputs == listed.inputs == ("number",)
    assert single.outputs == listed.outputs == ("text",)
    assert single.public_inputs == ("number",)


def test_a_single_state_object_stands_for_a_one_element_list() -> None:
    app = App()
    slot = State(0)
    function = app.add(lambda n: n + 1, slot, slot, name="bump")
    assert function.inputs == function.outputs == ("state",)
    assert function.input_slots == function.output_slots == (slot,)


def test_a_function_with_no_inputs_or_outputs_registers() -> None:
    app = App()
    function = app.add(lambda: None, name="noop")
    assert function.inputs == function.outputs == ()
    assert function.slots == ()


def test_inputs_may_be_a_tuple() -> None:
    app = App()
    function = app.add(lambda a, b: a, ("text", "number"), name="pair")
    assert function.public_inputs == ("text", "number")


# -- plain "state" inputs and outputs ------------------------------------------


def test_plain_state_input_is_bound_to_the_parameter_default() -> None:
    app = App()

    def chat(message, history=[]):  # noqa: B006 - the default is the state's default
        return history, history

    function = app.add(chat, ["text", "state"], ["chatbot", "state"])
    slot = function.input_slots[1]
    assert isinstance(slot, State)
    assert function.input_slots[0] is None
    assert slot.default == []
    assert slot.initial() == []
    assert slot.initial() is not chat.__defaults__[0]
    assert slot.name == "chat.history"


def test_plain_state_input_without_a_default_starts_at_none() -> None:
    app = App()
    function = app.add(lambda message, memory: memory, ["text", "state"], "text", name="f")
    slot = function.input_slots[1]
    assert isinstance(slot, State)
    assert slot.default is None
    assert slot.initial() is None


def test_plain_state_output_writes_back_the_plain_state_input() -> None:
    app = App()

    def count(step, total=0):
        return total + step, total + step

    function = app.add(count, ["number", "state"], ["number", "state"])
    assert function.output_slots == (None, function.input_slots[1])
    assert function.slots == (function.input_slots[1],)


def test_nth_plain_state_output_writes_back_the_nth_plain_state_input() -> None:
    app = App()

    def two(a=1, x="", b=2):
        return b, a

    function = app.add(two, ["state", "text", "state"], ["state", "state"])
    first, second = function.input_slots[0], function.input_slots[2]
    assert isinstance(first, State)
    assert isinstance(second, State)
    assert first is not second
    assert (first.default, second.default) == (1, 2)
    assert function.output_slots == (first, second)
    assert function.slots == (first, second)


def test_plain_state_slots_are_private_to_each_function() -> None:
    app = App()
    a = app.add(lambda s=0: s, "state", "state", name="a")
    b = app.add(lambda s=0: s, "state", "state", name="b")
    assert a.slots[0] is not b.slots[0]
    assert a.slots[0].key != b.slots[0].key


def test_state_inputs_and_outputs_are_not_public() -> None:
    app = App()

    def chat(message, history=None):
        return [], history

    function = app.add(chat, ["text", "state"], ["chatbot", "state"])
    assert function.inputs == ("text", "state")
    assert function.public_inputs == ("text",)
    assert function.outputs == ("chatbot", "state")
    assert function.public_outputs == ("chatbot",)


# -- named tether.State --------------------------------------------------------


def test_a_named_state_shared_by_two_functions_is_the_same_slot_in_both() -> None:
    app = App()
    cart = tether.State(default=[], name="cart")

    def add_item(item, items):
        return [*items, item]

    def checkout(items):
        return len(items), []

    adding = app.add(add_item, ["text", cart], [cart])
    paying = app.add(checkout, [cart], ["number", cart])
    assert adding.slots == (cart,)
    assert paying.slots == (cart,)
    assert adding.slots[0] is paying.slots[0]
    assert adding.input_slots[1] is cart
    assert paying.output_slots == (None, cart)


def test_a_named_state_output_may_be_written_without_being_read() -> None:
    app = App()
    last = State(None)
    function = app.add(lambda s: (s, s), "text", ["text", last], name="remember")
    assert function.output_slots == (None, last)
    assert function.slots == (last,)


def test_a_function_lists_each_slot_once_in_order_of_first_use() -> None:
    app = App()
    a, b = State(1), State(2)
    function = app.add(lambda x, y: (y, x), [a, b], [b, a], name="swap")
    assert function.slots == (a, b)


def test_a_named_state_input_ignores_the_parameter_default() -> None:
    app = App()
    slot = State(5)
    function = app.add(lambda n=99: n, [slot], name="read")
    assert function.input_slots[0] is slot
    assert slot.default == 5


# -- registration errors ---------------------------------------------------------


def test_app_error_is_a_type_error() -> None:
    assert issubclass(AppError, TypeError)


@pytest.mark.parametrize("bad", ["textbox", "Text", "", "image", 3])
def test_add_refuses_an_unknown_input_component(bad: Any) -> None:
    with pytest.raises(AppError, match="unknown component"):
        App().add(lambda x: x, [bad], name="f")


@pytest.mark.parametrize("bad", ["textbox", "markdown", None])
def test_add_refuses_an_unknown_output_component(bad: Any) -> None:
    with pytest.raises(AppError, match="unknown component"):
        App().add(lambda x: x, ["text"], [bad], name="f")


def test_add_refuses_a_state_output_without_a_state_input() -> None:
    with pytest.raises(AppError, match="'state' output needs a matching 'state' input"):
        App().add(lambda s: s, ["text"], ["text", "state"], name="f")


def test_add_refuses_more_plain_state_outputs_than_plain_state_inputs() -> None:
    with pytest.raises(AppError, match="'state' output"):
        App().add(lambda s=0: s, ["state"], ["state", "state"], name="f")


def test_a_named_state_input_does_not_pair_with_a_plain_state_output() -> None:
    with pytest.raises(AppError, match="'state' output"):
        App().add(lambda s: s, [State()], ["state"], name="f")


def test_add_refuses_a_duplicate_name() -> None:
    app = App()
    app.add(lambda x: x, "text", "text", name="echo")
    with pytest.raises(AppError, match="already registered"):
        app.add(lambda y: y, "number", "number", name="echo")
    assert app.functions["echo"].inputs == ("text",)


def test_a_failed_registration_registers_nothing() -> None:
    app = App()
    with pytest.raises(AppError):
        app.add(lambda x: x, ["nope"], name="f")
    assert app.functions == {}
    app.add(lambda x: x, ["text"], name="f")
    assert list(app.functions) == ["f"]


@pytest.mark.parametrize(
    "name",
    ["", "1st", "has space", "a/b", "a:b", "é", "-dash", ".dot", "a" * 65, "tab\tname"],
)
def test_add_refuses_a_bad_name(name: str) -> None:
    with pytest.raises(AppError, match="must match"):
        App().add(lambda: None, name=name)


def test_add_refuses_a_lambda_without_a_name() -> None:
    with pytest.raises(AppError, match="<lambda>"):
        App().add(lambda: None)


def test_add_refuses_a_name_with_a_trailing_newline() -> None:
    with pytest.raises(AppError, match="must match"):
        App().add(lambda: None, name="echo\n")


@pytest.mark.parametrize(
    "name", ["a", "_", "A9", "snake_case", "dotted.name", "kebab-case", "a" * 64]
)
def test_add_accepts_a_good_name(name: str) -> None:
    app = App()
    app.add(lambda: None, name=name)
    assert list(app.functions) == [name]


def test_add_refuses_parameters_that_have_neither_an_input_nor_a_default() -> None:
    def f(a, b, c=1):
        return a

    with pytest.raises(AppError, match=r"\['b'\] have no input and no default"):
        App().add(f, ["text"])


def test_add_accepts_extra_parameters_that_have_defaults() -> None:
    def f(a, b=2, *, c=3):
        return a

    assert App().add(f, ["text"]).public_inputs == ("text",)


def test_add_refuses_a_required_keyword_only_parameter() -> None:
    def f(a, *, b):
        return a

    with pytest.raises(AppError):
        App().add(f, ["text"])


def test_add_refuses_a_function_with_too_few_parameters() -> None:
    def f(a):
        return a

    with pytest.raises(AppError, match="takes 1 positional parameter but has 2 inputs"):
        App().add(f, ["text", "number"])


def test_add_counts_state_inputs_against_the_parameters() -> None:
    with pytest.raises(AppError, match="positional parameter"):
        App().add(lambda a: a, ["text", "state"], name="f")


def test_add_accepts_varargs_for_any_number_of_inputs() -> None:
    def f(*values):
        return values

    function = App().add(f, ["text", "number", "state"])
    assert function.public_inputs == ("text", "number")
    assert function.labels == ("arg0", "arg1")
    assert isinstance(function.input_slots[2], State)


def test_add_refuses_a_callable_without_a_readable_signature() -> None:
    with pytest.raises(AppError, match="cannot read its signature"):
        App().add(max, ["json"], name="f")


# -- manifest --------------------------------------------------------------------


def test_manifest_omits_state_and_labels_public_inputs_with_parameter_names() -> None:
    app = App()

    def chat(message, history=[], temperature=0.5):  # noqa: B006
        """Reply to a message.

        Longer explanation that stays out of the manifest.
        """
        return history, history

    function = app.add(chat, ["text", "state", "number"], ["chatbot", "state"])
    assert function.labels == ("message", "temperature")
    assert function.manifest() == {
        "name": "chat",
        "inputs": ["text", "number"],
        "outputs": ["chatbot"],
        "labels": ["message", "temperature"],
        "description": "Reply to a message.",
    }


def test_manifest_has_no_description_for_a_function_without_a_docstring() -> None:
    app = App()
    function = app.add(lambda x: x, "json", "json", name="same")
    assert function.description == ""
    assert "description" not in function.manifest()


def test_manifest_omits_named_state_too() -> None:
    app = App()
    slot = State(0)
    function = app.add(
        lambda n, inc: (n + inc, n + inc), [slot, "number"], [slot, "number"], name="add"
    )
    assert function.manifest()["inputs"] == ["number"]
    assert function.manifest()["outputs"] == ["number"]
    assert function.manifest()["labels"] == ["inc"]


def test_app_manifest_lists_functions_in_registration_order() -> None:
    app = App()
    for name in ("zeta", "alpha", "mid"):
        app.add(lambda x: x, "text", "text", name=name)
    manifest = app.manifest()
    assert [entry["name"] for entry in manifest] == ["zeta", "alpha", "mid"]
    assert manifest[0] == app.functions["zeta"].manifest()


def test_app_manifest_is_json_ready_lists() -> None:
    app = App()
    app.add(lambda a, b: a, ["text", "number"], ["text"], name="f")
    entry = app.manifest()[0]
    assert all(type(entry[key]) is list for key in ("inputs", "outputs", "labels"))


# -- check_arguments -------------------------------------------------------------


def make_order() -> Function:
    def order(item, count, gift, history=None):
        return item

    return App().add(order, ["text", "number", "checkbox", "state"], ["text"])


def test_check_arguments_returns_the_public_values() -> None:
    assert make_order().check_arguments(["tea", 2, False]) == ["tea", 2, False]


@pytest.mark.parametrize("data", [[], ["tea"], ["tea", 2], ["tea", 2, False, None]])
def test_check_arguments_refuses_the_wrong_number_of_inputs(data: list[Any]) -> None:
    with pytest.raises(BadValue) as info:
        make_order().check_arguments(data)
    message = str(info.value)
    assert message.startswith("order takes 3 inputs")
    assert "text, number, checkbox" in message
    assert message.endswith(f"got {len(data)}")


def test_check_arguments_message_uses_the_singular_for_one_input() -> None:
    function = App().add(lambda word: word, "text", name="one")
    with pytest.raises(BadValue, match=r"^one takes 1 input \(text\), got 2$"):
        function.check_arguments(["a", "b"])


def test_check_arguments_message_says_none_for_no_inputs() -> None:
    function = App().add(lambda: 1, name="none")
    with pytest.raises(BadValue, match=r"^none takes 0 inputs \(none\), got 1$"):
        function.check_arguments([1])


@pytest.mark.parametrize(
    ("data", "position", "label"),
    [
        ([3, 2, False], 0, "item"),
        (["tea", "2", False], 1, "count"),
        (["tea", True, False], 1, "count"),
        (["tea", 2, "no"], 2, "gift"),
    ],
)
def test_check_arguments_names_the_input_with_the_wrong_type(
    data: list[Any], position: int, label: str
) -> None:
    with pytest.raises(BadValue) as info:
        make_order().check_arguments(data)
    assert str(info.value).startswith(f"input {position} ({label}): expected")


def test_check_arguments_labels_skip_state_inputs() -> None:
    def f(history, count):
        return count

    function = App().add(f, ["state", "number"])
    with pytest.raises(BadValue, match=r"^input 0 \(count\)"):
        function.check_arguments(["x"])


# -- split_outputs ---------------------------------------------------------------


def test_split_outputs_with_no_outputs_ignores_the_return_value() -> None:
    function = App().add(lambda: None, name="f")
    assert function.split_outputs("ignored") == ([], [])
    assert function.split_outputs(None) == ([], [])


@pytest.mark.parametrize("returned", ["x", None, (1, 2), [1, 2, 3]])
def test_split_outputs_with_one_output_takes_the_whole_return_value(returned: Any) -> None:
    function = App().add(lambda: returned, [], ["json"], name="f")
    public, states = function.split_outputs(returned)
    assert public == [returned]
    assert public[0] is returned
    assert states == []


@pytest.mark.parametrize("returned", [("a", 1, True), ["a", 1, True]])
def test_split_outputs_with_several_outputs_takes_a_tuple_or_list(returned: Any) -> None:
    function = App().add(lambda: returned, [], ["text", "number", "checkbox"], name="f")
    assert function.split_outputs(returned) == (["a", 1, True], [])


@pytest.mark.parametrize(
    ("returned", "said"),
    [
        (("a",), "got 1 values"),
        (("a", 1, True, "extra"), "got 4 values"),
        ("abc", "got one str"),
        (None, "got one NoneType"),
        ({"a": 1, "b": 2, "c": 3}, "got one dict"),
    ],
)
def test_split_outputs_refuses_the_wrong_number_of_values(returned: Any, said: str) -> None:
    function = App().add(lambda: returned, [], ["text", "number", "checkbox"], name="f")
    with pytest.raises(BadValue) as info:
        function.split_outputs(returned)
    message = str(info.value)
    assert message.startswith("f must return 3 values (text, number, checkbox)")
    assert message.endswith(said)


def test_split_outputs_separates_new_state_values() -> None:
    def chat(message, history=None):
        return [["hi", "hello"]], ["new"]

    function = App().add(chat, ["text", "state"], ["chatbot", "state"])
    public, states = function.split_outputs(([["hi", "hello"]], ["new"]))
    assert public == [[["hi", "hello"]]]
    assert states == [(function.input_slots[1], ["new"])]


def test_split_outputs_with_only_a_state_output_has_no_public_values() -> None:
    slot = State(0)
    function = App().add(lambda n: n + 1, slot, slot, name="bump")
    assert function.split_outputs(7) == ([], [(slot, 7)])


def test_split_outputs_checks_a_chatbot_output() -> None:
    function = App().add(lambda: "oops", [], ["chatbot"], name="f")
    with pytest.raises(BadValue, match="chatbot output"):
        function.split_outputs("oops")


def test_split_outputs_does_not_check_a_state_value() -> None:
    slot = State()
    function = App().add(lambda: ("x", {1, 2}), [], ["text", slot], name="f")
    assert function.split_outputs(("x", {1, 2})) == (["x"], [(slot, {1, 2})])


# -- is_async ----------------------------------------------------------------------


def test_a_plain_function_is_not_async() -> None:
    def f(x):
        return x

    assert App().add(f, "text").is_async is False


def test_a_coroutine_function_is_async() -> None:
    async def f(x):
        return x

    assert App().add(f, "text").is_async is True


def test_a_partial_of_a_coroutine_function_is_async() -> None:
    async def f(prefix, x):
        return prefix + x

    assert App().add(functools.partial(f, ">"), "text", name="f").is_async is True


def test_a_sync_method_is_not_async_and_an_async_method_is() -> None:
    class Bot:
        def reply(self, x):
            return x

        async def areply(self, x):
            return x

    bot = Bot()
    app = App()
    assert app.add(bot.reply, "text").is_async is False
    assert app.add(bot.areply, "text").is_async is True
    assert app.functions["reply"].labels == ("x",)


def test_a_callable_object_with_an_async_call_is_async() -> None:
    class Handler:
        async def __call__(self, x):
            return x

    assert App().add(Handler(), "text", name="handler").is_async is True


# -- the app ---------------------------------------------------------------------


def test_a_new_app_has_a_title_a_store_and_no_functions() -> None:
    app = App("Shop")
    assert app.title == "Shop"
    assert app.functions == {}
    assert app.manifest() == []
    assert isinstance(app.store, tether.Store)
    assert App().title == "tether"


def test_each_app_has_its_own_store() -> None:
    assert App().store is not App().store


def test_on_session_end_registers_the_hook_and_returns_it() -> None:
    app = App()

    def goodbye(session):
        return None

    assert app.on_session_end(goodbye) is goodbye
    assert app.session_end_hooks == [goodbye]


def test_a_declaration_mistake_is_one_line_starting_with_the_functions_file_and_line() -> None:
    app = App()
    decorator_line = sys._getframe().f_lineno + 4
    with pytest.raises(AppError) as raised:
        # (the decorator's line is the one that holds the mistake)

        @app.function(inputs=["textbox", "state"], outputs=["chatbot", "state"])
        def chat(message, history=[]):  # noqa: B006
            return history, history

    message = str(raised.value)
    where = f"{os.path.relpath(__file__)}:{decorator_line}: "
    assert message.startswith(where + "chat: unknown component 'textbox'; expected one of text")
    assert "\n" not in message


def test_a_mistake_of_a_partial_names_the_wrapped_functions_file() -> None:
    def shout(text, volume):
        return text

    where = f"{os.path.relpath(__file__)}:{shout.__code__.co_firstlineno}: "
    with pytest.raises(AppError) as raised:
        App().add(functools.partial(shout), "text", "text", name="shout")
    assert str(raised.value) == where + "shout: parameters ['volume'] have no input and no default"


# -- what the app declares for clients to show (welcome, protocol 9) ------------------


def test_topics_given_as_a_mapping_are_allowed_and_described() -> None:
    app = App("described", topics={"scores": "The best three.", "room:*": ""})
    app.describe_topic("scores", "The best three, live.", label="Top scores")
    assert app.topics == ["scores", "room:*"]
    fields = app.welcome_fields()
    assert fields["title"] == "described"
    assert fields["topic_info"] == {
        "scores": {"label": "Top scores", "description": "The best three, live."},
        "room:*": {},
    }


def test_a_topic_that_is_not_allowed_cannot_be_described() -> None:
    with pytest.raises(AppError, match="not an allowed topic"):
        App().describe_topic("scores", "nobody may follow it")


def room_functions(app: App) -> None:
    @app.function(inputs=["text", "text"], outputs="json")
    def enter(name: str, room: str) -> object:
        return {"room": room, "name": name, "history": [], "members": [name]}

    @app.function(inputs="text", outputs="json")
    def post(text: str) -> object:
        return {"kind": "message", "id": "1", "name": "x", "text": text, "at": 0}

    @app.function(outputs="json")
    def exit_room() -> object:
        return {"left": None}


def test_a_room_is_declared_over_functions_of_any_name() -> None:
    app = App(topics=["channel/*"])
    room_functions(app)
    app.room(join="enter", say="post", leave="exit_room", topic="channel/{room}", label="Rooms")
    assert app.welcome_fields()["widgets"] == [
        {
            "kind": "room",
            "label": "Rooms",
            "join": "enter",
            "say": "post",
            "leave": "exit_room",
            "topic": "channel/{room}",
        }
    ]


ROOM = {"join": "enter", "say": "post", "leave": "exit_room"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({**ROOM, "join": "missing"}, "not a registered function"),
        ({**ROOM, "join": "post"}, r"must take the inputs \(text, text\)"),
        ({**ROOM, "topic": "room"}, "must contain"),
        ({**ROOM, "topic": "other:{room}"}, "allowed"),
    ],
)
def test_a_room_over_the_wrong_functions_or_topic_is_refused(
    kwargs: dict[str, str], message: str
) -> None:
    app = App(topics=["room:*"])
    room_functions(app)
    with pytest.raises(AppError, match=message):
        app.room(**kwargs)


def test_a_label_goes_into_the_manifest_and_none_leaves_it_out() -> None:
    app = App()

    @app.function(inputs="number", outputs="number", label="Double it")
    def double(x: float) -> float:
        return 2 * x

    @app.function(inputs="number", outputs="number")
    def triple(x: float) -> float:
        return 3 * x

    double_entry, triple_entry = app.manifest()
    assert double_entry["label"] == "Double it"
    assert "label" not in triple_entry
    with pytest.raises(AppError, match="label must be a non-empty string"):
        app.add(triple, "number", "number", name="t2", label="  ")
