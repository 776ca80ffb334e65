"""A minimal Django project with the ticketing site's models, for tests only.

Its migrations are never committed: the tests generate them with `makemigrations` and apply them
with `migrate`, so the tables payverify is tested against are the ones Django really makes.
"""
