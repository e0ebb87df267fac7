from anfu.cli.main import app

app(prog_name="anfu")
