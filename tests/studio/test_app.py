import pytest

from studio.cli import main


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ["record", "datasets", "finetune", "rollout", "serve", "devices", "store", "demo"]:
        assert name in out


@pytest.mark.gui
def test_main_window_opens_with_four_tabs(qtbot, home):
    from studio.app import MainWindow
    from studio.context import AppContext

    window = MainWindow(AppContext(home=home))
    qtbot.addWidget(window)
    window.show()
    titles = [window.tabs.tabText(i) for i in range(window.tabs.count())]
    assert titles == ["Record", "Datasets", "Fine-tune", "Rollout"]
    window.close()
