"""Only a match pattern selects this module's function."""


def test_three():
    return 3
