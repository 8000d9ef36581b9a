import pickle
from pathlib import Path

from terrasynth.errors import InputError, TerrasynthError


def test_message_names_the_file_the_problem_and_the_fix():
    error = InputError("data/masks/0001.png", "mask has class ids 0..7", "use the matching classes.json")
    assert isinstance(error, TerrasynthError)
    assert error.path == Path("data/masks/0001.png")
    assert str(error) == "data/masks/0001.png: mask has class ids 0..7 (use the matching classes.json)"


def test_message_without_path_or_fix():
    assert str(InputError(None, "no model given")) == "no model given"


def test_survives_pickling_with_its_fields():
    error = InputError("a/b.png", "cannot read image", "re-download it")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is InputError
    assert (copy.path, copy.problem, copy.fix, str(copy)) == (
        error.path,
        error.problem,
        error.fix,
        str(error),
    )


def test_rebuilds_from_its_message_alone():
    # torch's DataLoader re-raises a worker's error as ``type(error)(message)``: it must stay an InputError.
    message = "Caught InputError in DataLoader worker process 0.\nOriginal Traceback: ..."
    error = InputError(message)
    assert isinstance(error, InputError)
    assert str(error) == message
    assert error.path is None
