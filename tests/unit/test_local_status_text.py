"""What `make local-status` says about each state of a service (the text users act on)."""

from persona.services.local_stack import ServiceState


def test_children_answering_after_their_main_process_died_are_named_with_the_way_out():
    state = ServiceState(
        pid=4242, alive=False, members=3, answering=True, port=5000, listeners=(4250, 4251)
    )
    assert state.orphaned and not state.running
    assert state.describe() == (
        "main process 4242 gone but children still answer on 5000 (pids 4250, 4251); stop them "
        "with make local-down, make local-status CLEAN=1 or kill -- -4242"
    )


def test_leftovers_that_do_not_answer_are_counted():
    state = ServiceState(pid=4242, alive=False, members=2, answering=False, port=5000)
    assert state.describe() == (
        "main process 4242 gone, 2 process(es) of its group still run; stop them with "
        "make local-down, make local-status CLEAN=1 or kill -- -4242"
    )


def test_running_and_stopped_services():
    assert ServiceState(7, True, 4, True, 5000).describe() == "healthy (pid 7)"
    assert not ServiceState(7, True, 4, True, 5000).orphaned
    assert ServiceState(7, False, 0, False, 5000).describe() == "stopped (pid 7 exited)"
    assert ServiceState(None, False, 0, False, 5000).describe() == "stopped"
