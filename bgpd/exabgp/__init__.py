"""The ExaBGP adapter: the only package that knows ExaBGP's configuration syntax, its JSON events and its
command text.

ExaBGP plays the session engine (TCP, OPEN, KEEPALIVE, UPDATE encoding); bgpd is the decision engine.
Everything outside this package speaks `bgpd.model` types and the event classes of `bgpd.exabgp.codec`.

- `codec`: JSON event lines -> typed events; typed announcements -> command lines.
- `confgen`: the ExaBGP configuration file and environment bgpd generates.
- `bridge`: the helper process ExaBGP runs, relaying its pipes to bgpd's unix socket.
- `supervisor`: runs ExaBGP as a child, restarts it when it dies, moves lines both ways.
"""
