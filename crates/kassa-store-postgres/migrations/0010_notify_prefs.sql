-- Notification preferences: four opt-in switches, SMS and e-mail, each per
-- transaction and per sign-in (DESIGN.md: "SMS/e-mail per transaction, per
-- login"). notify_sms / notify_email stay the per-transaction switches; the
-- two new columns are the per-sign-in ones. notify_login is kept, written as
-- (sms_login OR email_login), and no longer read.
--
-- New customers opt in: registration writes all four as 0 explicitly (the
-- column defaults of 0002 cannot be changed in SQLite, so the INSERT names
-- them). Existing customers keep what they had: a sign-in notice went to
-- the channels turned on per transaction when notify_login was set.

ALTER TABLE customers ADD COLUMN notify_sms_login BIGINT NOT NULL DEFAULT 0
    CHECK (notify_sms_login IN (0, 1));
ALTER TABLE customers ADD COLUMN notify_email_login BIGINT NOT NULL DEFAULT 0
    CHECK (notify_email_login IN (0, 1));

UPDATE customers SET notify_sms_login = notify_sms * notify_login,
                     notify_email_login = notify_email * notify_login;
