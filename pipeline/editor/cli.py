"""``csg edit``: start the editor server and print (and open) its address. Only click at import."""
from __future__ import annotations

import click


@click.command("edit")
@click.argument("pose_path", type=click.Path(dir_okay=False))
@click.option("--ref", "ref_path", required=True, type=click.Path(dir_okay=False),
              help="The reference photo the skeleton was made for (same canvas).")
@click.option("--audio", "audio_path", default=None, type=click.Path(dir_okay=False),
              help="The speech (waveform, playback, re-generation).")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False),
              help="Where Save writes (default: POSE_PATH itself, replaced atomically).")
@click.option("--out-dir", default=None, type=click.Path(file_okay=False),
              help="Folder for rendered videos and OpenPose exports (default: POSE_PATH's).")
@click.option("--ref-pose", "ref_pose_path", default=None, type=click.Path(dir_okay=False),
              help="The photo's own skeleton JSON (default: extracted from the photo when needed).")
@click.option("--checkpoint", default=None,
              help="Stage-1 pipeline folder for re-generation (default: the embedded one).")
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda:0.")
@click.option("--max-side", default=512, show_default=True, type=click.IntRange(0),
              help="Render at this longer side (0: the photo's size).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback exposes the editor to the network.")
@click.option("--port", default=0, type=click.IntRange(0, 65535),
              help="Port (default: a free one).")
@click.option("--no-browser", is_flag=True, help="Only print the address.")
def edit(pose_path, ref_path, audio_path, output, out_dir, ref_pose_path, checkpoint, device,
         max_side, host, port, no_browser):
    """Edit POSE_PATH (csg.pose JSON) in the browser: timeline, locks, re-generate, render."""
    from .server import LOOPBACK, EditorServer
    from .session import EditorSession

    session = EditorSession(pose_path, ref_path, audio_path, output=output, out_dir=out_dir,
                            ref_pose_path=ref_pose_path, checkpoint=checkpoint, device=device,
                            max_side=max_side)
    server = EditorServer(session, host=host, port=port)
    if host not in LOOPBACK:
        click.echo(f"warning: listening on {host}: anyone who can reach it and has the address "
                   "below can edit and write files", err=True)
    click.echo(f"csg edit: {server.url}")
    click.echo("(the token in the address is required; Ctrl-C stops the editor)")
    if not no_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.run()  # until Ctrl-C / SIGTERM: uvicorn shuts down, then re-raises the signal
    except KeyboardInterrupt:  # stopping the editor is the normal way out, not an error
        pass
    click.echo("csg edit: stopped")
    if session.state.dirty:
        click.echo(f"note: unsaved edits were discarded ({session.output} unchanged)", err=True)
