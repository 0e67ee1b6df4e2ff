//! Checked-in hex vectors of one folder under `tests/vectors/` (the format of
//! `tests/golden_vectors.rs`: a `# <type>: <what>` comment, then lowercase hex in lines of 100):
//! rendering, reading, regenerating and the check that the files are what the generator makes.
//! Shared by the vector tests of the MIMIMI structures and of privacy mode.

use std::path::PathBuf;

/// The width of a hex line.
const LINE_WIDTH: usize = 100;

/// One vector: its file name (without `.hex`), its comment and its bytes.
pub(super) struct Vector {
    pub(super) name: &'static str,
    pub(super) comment: String,
    pub(super) bytes: Vec<u8>,
}

/// A folder of vectors, e.g. `concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/mimimi")`.
pub(super) struct VectorDir(pub(super) &'static str);

impl VectorDir {
    fn path(&self, name: &str) -> PathBuf {
        PathBuf::from(self.0).join(format!("{name}.hex"))
    }

    /// The file's text for `vector`.
    pub(super) fn render(vector: &Vector) -> String {
        let hex: String = vector.bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut text = format!("# {}\n", vector.comment);
        for chunk in hex.as_bytes().chunks(LINE_WIDTH) {
            text.push_str(std::str::from_utf8(chunk).unwrap());
            text.push('\n');
        }
        text
    }

    /// The bytes of the checked-in vector `name`.
    pub(super) fn read(&self, name: &str) -> Vec<u8> {
        let text = std::fs::read_to_string(self.path(name))
            .unwrap_or_else(|e| panic!("{name}: {e}; regenerate the vectors"));
        let hex: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .concat();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The checked-in vector `name` decoded as a `T`, which must re-encode to the same bytes.
    pub(super) fn round_trip<T: tls_codec::DeserializeBytes + tls_codec::Serialize>(
        &self,
        name: &str,
    ) -> T {
        let bytes = self.read(name);
        let value =
            mimi_ds::wire::decode_exact::<T>(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            mimi_ds::wire::encode(&value).unwrap(),
            bytes,
            "{name} re-encodes"
        );
        value
    }

    /// Rewrites the folder's files from `vectors`.
    pub(super) fn regenerate(&self, vectors: &[Vector]) {
        std::fs::create_dir_all(self.0).unwrap();
        for vector in vectors {
            std::fs::write(self.path(vector.name), Self::render(vector)).unwrap();
        }
    }

    /// Every file is what the generator makes, and the folder holds no other file.
    pub(super) fn check(&self, vectors: &[Vector]) {
        for vector in vectors {
            let text = std::fs::read_to_string(self.path(vector.name)).unwrap();
            assert_eq!(text, Self::render(vector), "{} differs", vector.name);
        }
        assert_eq!(
            vectors.len(),
            std::fs::read_dir(self.0).unwrap().count(),
            "a stale file in {}",
            self.0
        );
    }
}
