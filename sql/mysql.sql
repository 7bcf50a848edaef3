-- vipsticky schema version 1 for MariaDB/MySQL, written by `vipsticky install-schema --sql`
CREATE TABLE IF NOT EXISTS vipsticky_meta (name VARCHAR(64) NOT NULL PRIMARY KEY, value VARCHAR(255) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE IF NOT EXISTS vip_numbers (number_key VARCHAR(15) CHARACTER SET ascii NOT NULL PRIMARY KEY, priority INT NOT NULL, label VARCHAR(255) NOT NULL DEFAULT '') ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE IF NOT EXISTS numbers_remember (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, number VARCHAR(80) NOT NULL, queue VARCHAR(80) NOT NULL DEFAULT '', agent VARCHAR(120) NOT NULL, last_contact BIGINT NOT NULL, expires_at BIGINT NOT NULL, UNIQUE KEY number_queue (number, queue), KEY expires_at (expires_at)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
INSERT INTO vipsticky_meta (name, value) VALUES ('schema_version', '1') ON DUPLICATE KEY UPDATE value = VALUES(value);
