"""Images and their versions (each version is a directory under images/)."""
from __future__ import annotations


class ImagesMixin:
    def add_image_version(self, image: str, version: int, path: str, *, parent: int | None = None,
                          golden_client: str | None = None, ip_method: str | None = None,
                          post_install: str | None = None) -> None:
        now = self.now()
        with self.tx() as db:
            db.execute("INSERT INTO images (name, golden_client, ip_method, post_install, created) "
                       "VALUES (?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET "
                       "golden_client=coalesce(excluded.golden_client, golden_client), "
                       "ip_method=coalesce(excluded.ip_method, ip_method), "
                       "post_install=coalesce(excluded.post_install, post_install)",
                       (image, golden_client, ip_method, post_install, now))
            db.execute("INSERT OR REPLACE INTO image_versions (image, version, path, state, parent, created) "
                       "VALUES (?,?,?,'incomplete',?,?)", (image, version, path, parent, now))

    def finish_image_version(self, image: str, version: int, size: int | None) -> None:
        with self.tx() as db:
            db.execute("UPDATE image_versions SET state='complete', size=? WHERE image=? AND version=?",
                       (size, image, version))

    def images(self) -> list[dict]:
        return [dict(r) for r in self.query(
            "SELECT i.name, i.golden_client, i.ip_method, i.post_install, i.created, "
            "max(v.version) FILTER (WHERE v.state='complete') AS latest, count(v.version) AS versions "
            "FROM images i LEFT JOIN image_versions v ON v.image=i.name GROUP BY i.name ORDER BY i.name")]

    def image(self, name: str) -> dict | None:
        rows = self.query("SELECT * FROM images WHERE name=?", (name,))
        return dict(rows[0]) if rows else None

    def image_versions(self, image: str) -> list[dict]:
        return [dict(r) for r in self.query(
            "SELECT * FROM image_versions WHERE image=? ORDER BY version", (image,))]

    def delete_image(self, name: str) -> bool:
        with self.tx() as db:
            return db.execute("DELETE FROM images WHERE name=?", (name,)).rowcount == 1

    # --- version bookkeeping used by the image store (appliance/images.py) ---
    def image_version(self, image: str, version: int) -> dict | None:
        rows = self.query("SELECT * FROM image_versions WHERE image=? AND version=?", (image, version))
        return dict(rows[0]) if rows else None

    def latest_image_version(self, image: str) -> dict | None:
        """The newest complete version: what module `<image>` and installs serve."""
        rows = self.query("SELECT * FROM image_versions WHERE image=? AND state='complete' "
                          "ORDER BY version DESC LIMIT 1", (image,))
        return dict(rows[0]) if rows else None

    def next_image_version(self, image: str) -> int:
        rows = self.query("SELECT coalesce(max(version), 0) FROM image_versions WHERE image=?", (image,))
        return rows[0][0] + 1

    def complete_image_versions(self) -> list[dict]:
        """Every complete version of every image (what the rsync daemon exports)."""
        return [dict(r) for r in self.query(
            "SELECT * FROM image_versions WHERE state='complete' ORDER BY image, version")]

    def set_image_details(self, image: str, *, ip_method: str | None = None,
                          post_install: str | None = None, golden_client: str | None = None) -> None:
        with self.tx() as db:
            db.execute("UPDATE images SET ip_method=coalesce(?, ip_method), "
                       "post_install=coalesce(?, post_install), "
                       "golden_client=coalesce(?, golden_client) WHERE name=?",
                       (ip_method, post_install, golden_client, image))

    def delete_image_version(self, image: str, version: int) -> bool:
        with self.tx() as db:
            return db.execute("DELETE FROM image_versions WHERE image=? AND version=?",
                              (image, version)).rowcount == 1

    def rename_image(self, old: str, new: str, old_dir: str, new_dir: str) -> int:
        """One transaction: the image, its versions (and their paths under old_dir, now new_dir)
        and the hosts that install it take the new name. Returns how many hosts moved."""
        with self.tx() as db:
            db.execute("INSERT INTO images (name, golden_client, ip_method, post_install, created) "
                       "SELECT ?, golden_client, ip_method, post_install, created FROM images WHERE name=?",
                       (new, old))
            db.execute("UPDATE image_versions SET image=?, path=CASE WHEN substr(path, 1, ?) = ? "
                       "THEN ? || substr(path, ?) ELSE path END WHERE image=?",
                       (new, len(old_dir), old_dir, new_dir, len(old_dir) + 1, old))
            moved = db.execute("UPDATE hosts SET image=? WHERE image=?", (new, old)).rowcount
            db.execute("DELETE FROM images WHERE name=?", (old,))
            return moved
