-- A webhook may target a loopback, private or link-local address only when
-- it was added with `--allow-private`. Deliveries check the address again
-- after every DNS resolution, so a public name that later points inside
-- the operator's network is refused too. Hooks added before this keep no
-- such allowance.
ALTER TABLE webhooks ADD COLUMN allow_private boolean NOT NULL DEFAULT false;
